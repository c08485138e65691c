"""A dialect described entirely by data: the connection's ``dialect_options``.

Per operation: a method, a path template, optional query/header/body templates, and
JMESPath expressions that pick the job record, the id, the result or the log text
out of the response. The job record is read with one set of JMESPath expressions
(id, status, progress, error, result, times), and a status map turns the service's
status values into ours. JMESPath is evaluated by a pure library, so "done when
field X equals Y" is safe to evaluate in the triggerer. The spec is validated once,
when the connection is read; every error names the field. Format: docs/dialects.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import jmespath
import jmespath.exceptions
import pendulum

from jobservice_provider.core.dialects.base import (
    BatchLookup,
    Dialect,
    FollowUp,
    ListQuery,
    LogChunk,
    OffsetLogs,
    Page,
    RecordLogs,
    RecordPage,
    SubmitRequest,
    WholeLogs,
    classify_error,
    last_json_line,
    text_error_detail,
    web_url,
)
from jobservice_provider.core.dialects.spec_schema import SpecError, operation_names, own_keys, placeholders, validate
from jobservice_provider.core.errors import (
    ConfigurationError,
    InvalidRequestError,
    JobServiceError,
    MalformedResponseError,
    PermanentError,
    body_excerpt,
)
from jobservice_provider.core.http import HttpRequest, HttpResponse
from jobservice_provider.core.job import Job, Progress, RemoteError, _opt_time
from jobservice_provider.core.status import FAILURE, JobStatus

# Per operation: the template variables it may use, and its own keys besides method/path/query/headers/body
# (both from the spec's JSON Schema, spec_schema.py, which holds the structure of a spec).
OPERATIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    name: (placeholders(name), own_keys(name)) for name in operation_names()
}
# Where the schema cannot say it: keys whose value is data, not a JMESPath expression.
_NOT_JMESPATH = frozenset({"duplicate", "max_batch", "parse", "missing", "page_size", "settle_s"})
# A log of records: records one read asks for ({limit}) unless the spec says; seconds a finished
# job's log is read on until it stops growing (operations.logs.settle_s), for any kind of log.
DEFAULT_LOG_PAGE_SIZE = 100
# Job records remembered per dialect (by job id), so an unchanged record is not mapped again.
MAPPED_RECORDS = 20_000
DEFAULT_LOG_SETTLE_S = 2.0
# Request values a log operation's response expressions may use (a record log's paging).
REQUEST_VALUES_IN_EXPRESSIONS = frozenset({"offset", "limit"})

# An ISO 8601 date-time that ends in a zone (Z or ±hh:mm); a naive one is read by pendulum (as UTC).
_ISO_WITH_ZONE = re.compile(r"T.*(?:Z|[+-]\d\d:?\d\d)$")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_-]+)*)\}")


# -- templates ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Template:
    """A string with ``{name}`` / ``{name.key}`` placeholders (``{{`` and ``}}`` are literal braces).

    A string that is exactly one placeholder renders to the value itself (an object stays
    an object in a JSON body); otherwise values are interpolated as text.
    """

    source: str
    parts: tuple[str | tuple[str, ...], ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(part[0] for part in self.parts if isinstance(part, tuple))

    @property
    def whole(self) -> tuple[str, ...] | None:
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], tuple) else None

    def render(self, values: Mapping[str, Any], escape: bool = False) -> Any:
        whole = self.whole
        if whole is not None and not escape:
            return _lookup(values, whole)
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = _lookup(values, part)
            if escape:
                if value is None or value == "":
                    raise InvalidRequestError(f"path placeholder {{{'.'.join(part)}}} is empty")
                out.append(quote(_text(value), safe=""))
            else:
                out.append("" if value is None else _text(value))
        return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_template(source: str) -> Template:
    """Parse a template; raises ``ValueError`` for a stray brace."""
    parts: list[str | tuple[str, ...]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        literal = source[position : match.start()]
        if "{" in literal or "}" in literal:
            raise ValueError(f"stray brace in {source!r} (write {{{{ or }}}} for a literal brace)")
        if literal:
            parts.append(literal)
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        else:
            parts.append((match.group(1), *[p for p in match.group(2).split(".") if p]))
        position = match.end()
    tail = source[position:]
    if "{" in tail or "}" in tail:
        raise ValueError(f"stray brace in {source!r} (write {{{{ or }}}} for a literal brace)")
    if tail:
        parts.append(tail)
    return Template(source, tuple(parts))


def _lookup(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = values.get(path[0])
    for key in path[1:]:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def render_json(template: Any, values: Mapping[str, Any]) -> Any:
    """A JSON body template rendered; object members that render to null are left out."""
    if isinstance(template, str):
        return compile_template(template).render(values)
    if isinstance(template, list):
        return [render_json(item, values) for item in template]
    if isinstance(template, dict):
        rendered = {key: render_json(item, values) for key, item in template.items()}
        return {key: item for key, item in rendered.items() if item is not None}
    return template


def _json_strings(template: Any) -> list[str]:
    if isinstance(template, str):
        return [template]
    if isinstance(template, list):
        return [s for item in template for s in _json_strings(item)]
    if isinstance(template, dict):
        return [s for item in template.values() for s in _json_strings(item)]
    return []


# -- the validated spec ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    exprs: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # compiled JMESPath by key
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # other validated keys

    @property
    def names(self) -> frozenset[str]:
        """Every template variable this operation uses."""
        sources = [self.path, *(v for _, v in self.query), *(v for _, v in self.headers), *_json_strings(self.body)]
        return frozenset(name for source in sources for name in compile_template(source).names)

    def request(self, values: Mapping[str, Any], *, idempotent: bool = True) -> HttpRequest:
        path = compile_template(self.path).render(values, escape=True)
        params: list[tuple[str, str]] = []
        for name, source in self.query:
            value = compile_template(source).render(values)
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    params.append((name, _text(item)))
        headers = []
        for name, source in self.headers:
            value = compile_template(source).render(values)
            if value is not None and value != "":
                headers.append((name, _text(value)))
        body = render_json(self.body, values) if self.body is not None else None
        return HttpRequest(self.method, path, params=tuple(params), json=body, headers=tuple(headers), idempotent=idempotent)

    def search(self, key: str, data: Any, request: Mapping[str, Any] | None = None) -> Any:
        """``key``'s expression on a response; one that uses request values is rendered with ``request`` first."""
        expression = self.exprs[key]
        if isinstance(expression, RequestExpression):
            expression = expression.compiled(request or {})
        return _search(expression, data, f"operations.{self.name}.{key}")


@dataclasses.dataclass(frozen=True)
class RequestExpression:
    """A response expression that uses the request's values (``{offset}``, ``{limit}``), e.g.
    ``[{offset}:]`` or ``length(@) < `{limit}```: the values are written in as JSON, then it is
    compiled (once per distinct text). Literal braces in it are written ``{{`` and ``}}``."""

    source: str

    def compiled(self, values: Mapping[str, Any]) -> Any:
        template = compile_template(self.source)
        text = "".join(part if isinstance(part, str) else json.dumps(_lookup(values, part)) for part in template.parts)
        return _compile_rendered(text)


@functools.lru_cache(maxsize=256)
def _compile_rendered(text: str) -> Any:
    return jmespath.compile(text)


def _request_expression(value: Any, field: str) -> Any:
    """A response expression of the logs operation: plain JMESPath, or a :class:`RequestExpression`."""
    if not isinstance(value, str) or not any("{" + name + "}" in value for name in REQUEST_VALUES_IN_EXPRESSIONS):
        return _compile_jmespath(value, field)
    try:
        names = compile_template(value).names
    except ValueError as exc:
        raise SpecError(field, f"{exc} (an expression using {{offset}} or {{limit}} is a template)") from None
    unknown = sorted(names - REQUEST_VALUES_IN_EXPRESSIONS)
    if unknown:
        raise SpecError(field, f"unknown placeholder {{{unknown[0]}}}; a response expression may use {{offset}} and {{limit}}")
    expression = RequestExpression(value)
    try:
        expression.compiled({"offset": 0, "limit": 1})
    except jmespath.exceptions.JMESPathError as exc:
        raise SpecError(field, f"invalid JMESPath {value!r} (with {{offset}} and {{limit}} written in): {exc}") from None
    return expression


def _search(expression: Any, data: Any, field: str) -> Any:
    try:
        return expression.search(data)
    except jmespath.exceptions.JMESPathError as exc:
        raise MalformedResponseError(f"declarative dialect: {field} failed on the response: {exc}") from exc


class FieldPath:
    """A JMESPath expression that only names a field or a path of fields (``id``, ``state.type``),
    evaluated without the JMESPath interpreter: with the same answer (a missing member, or a
    member of something that is not an object, is null) at a fraction of the cost. Most record
    expressions are of this kind, and a triggerer evaluates them for every record of every check.
    """

    __slots__ = ("expression", "keys")

    def __init__(self, expression: str, keys: tuple[str, ...]) -> None:
        self.expression, self.keys = expression, keys

    def search(self, data: Any) -> Any:
        for key in self.keys:
            if not isinstance(data, dict):
                return None
            data = data.get(key)
        return data

    @classmethod
    def of(cls, expression: str, tree: Mapping[str, Any]) -> FieldPath | None:
        """The field path a parsed expression is, or None when it is anything more."""
        keys = _field_keys(tree)
        return None if keys is None else cls(expression, keys)


def _field_keys(tree: Mapping[str, Any]) -> tuple[str, ...] | None:
    if tree.get("type") == "field":
        return (tree["value"],)
    if tree.get("type") == "subexpression":
        keys: tuple[str, ...] = ()
        for child in tree["children"]:
            part = _field_keys(child)
            if part is None:
                return None
            keys += part
        return keys
    return None


def _compile_jmespath(value: str, field: str) -> Any:
    """The expression compiled once (when the spec is read): a :class:`FieldPath` where it is one."""
    if not value.strip():
        raise SpecError(field, "must be a JMESPath expression (a non-empty string)")
    try:
        compiled = jmespath.compile(value)
    except jmespath.exceptions.JMESPathError as exc:
        raise SpecError(field, f"invalid JMESPath {value!r}: {exc}") from None
    return FieldPath.of(value, compiled.parsed) or compiled


def _template(value: Any, field: str, allowed: frozenset[str]) -> str:
    """A template the schema let through (a string, number or boolean), with its placeholders checked."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    try:
        names = compile_template(value).names
    except ValueError as exc:
        raise SpecError(field, str(exc)) from None
    unknown = sorted(names - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise SpecError(field, f"unknown placeholder {{{unknown[0]}}}; this operation has: {known}")
    return str(value)


def _operation(name: str, spec: Mapping[str, Any], field: str) -> Operation:
    """One operation of a spec the schema passed: its templates and expressions compiled, and what
    depends on more than one field checked."""
    variables, own = OPERATIONS[name]
    method = str(spec.get("method", "POST" if name in ("submit", "cancel") else "GET")).upper()
    path = _template(spec["path"], f"{field}.path", variables)
    query = tuple((str(k), _template(v, f"{field}.query.{k}", variables)) for k, v in spec.get("query", {}).items())
    headers = tuple((str(k), _template(v, f"{field}.headers.{k}", variables)) for k, v in spec.get("headers", {}).items())
    if any(k.lower() == "authorization" for k, _ in headers):
        raise SpecError(f"{field}.headers", "put the token in the connection's password field, not in a header")
    body = spec.get("body")
    if body is not None:
        if method == "GET":
            raise SpecError(f"{field}.body", "a GET request has no body")
        for source in _json_strings(body):
            _template(source, f"{field}.body", variables)
    # Response expressions of the logs operation may use request values ({offset}, {limit}).
    expression = _request_expression if name == "logs" else _compile_jmespath
    exprs = {key: expression(spec[key], f"{field}.{key}") for key in sorted(own - _NOT_JMESPATH) if key in spec}
    extra: dict[str, Any] = {key: spec[key] for key in ("max_batch", "parse", "missing", "page_size") if key in spec}
    if "settle_s" in spec:
        extra["settle_s"] = float(spec["settle_s"])
    if "duplicate" in spec:
        duplicate = spec["duplicate"]
        extra["duplicate"] = {
            "status": frozenset(duplicate["status"]),
            "body_contains": duplicate.get("body_contains"),
            "id": _template(duplicate["id"], f"{field}.duplicate.id", frozenset({"idempotency_key"})),
        }
    operation = Operation(name, method, path, query, headers, body, exprs, extra)
    _check_operation(operation, field)
    return operation


def _check_operation(operation: Operation, field: str) -> None:
    names, exprs = operation.names, operation.exprs
    match operation.name:
        case "submit":
            if "job" in exprs and "id" in exprs:
                raise SpecError(f"{field}.id", "give 'job' (the record in the response) or 'id' (then it is fetched), not both")
        case "get" | "cancel" if "job_id" not in names:
            raise SpecError(f"{field}.path", "must use {job_id}")
        case "cancel" if "job" in exprs and "id" in exprs:
            raise SpecError(f"{field}.id", "give 'job' or 'id', not both")
        case "get_many":
            if "job_ids" not in names:
                raise SpecError(f"{field}.query", "must use {job_ids} (a list: one query parameter per id)")
            if "jobs" not in exprs:
                raise SpecError(f"{field}.jobs", "is required: JMESPath to the list of job records")
        case "list" if "jobs" not in exprs:
            raise SpecError(f"{field}.jobs", "is required: JMESPath to the list of job records")
        case "result" | "logs" if "job_id" not in names:
            raise SpecError(f"{field}.path", "must use {job_id}")
    if operation.name == "logs" and "records" in exprs:
        # A log of records: each record is a line; offsets count records (the dialect counts them).
        if "text" in exprs:
            raise SpecError(f"{field}.text", "give 'text' (a log as text) or 'records' (a list of records), not both")
        if "line" not in exprs:
            raise SpecError(f"{field}.line", "is required with records: JMESPath to a record's text, e.g. 'message'")
        for key in ("next_offset", "complete"):
            if key in exprs:
                raise SpecError(f"{field}.{key}", "is for a log as text; a log of records counts its records itself")
        if "cursor" in names and "offset" in names:
            raise SpecError(f"{field}.query", "page a log of records by {offset} or by {cursor}, not both")
        if ("cursor" in names) != ("next_cursor" in exprs):
            raise SpecError(
                f"{field}.next_cursor" if "cursor" in names else f"{field}.query",
                "a log of records paged by {cursor} needs next_cursor (JMESPath to the next page's cursor)"
                if "cursor" in names
                else "next_cursor needs the request to send {cursor}",
            )
        if "limit" in names and not ({"offset", "cursor"} & names):
            raise SpecError(f"{field}.query", "{limit} pages a log of records only together with {offset} or {cursor}")
    elif operation.name == "logs":
        if "text" not in exprs:
            raise SpecError(f"{field}.text", "is required: JMESPath to the log text (or records and line for a list of records)")
        for key in ("line", "page_size", "next_cursor"):
            if key in operation.extra or key in exprs:
                raise SpecError(f"{field}.{key}", "is for a log of records (with 'records')")
        for key, expression in exprs.items():
            if isinstance(expression, RequestExpression):
                raise SpecError(f"{field}.{key}", "{offset} and {limit} in a response expression are for a log of records")
        for placeholder in ("limit", "cursor"):
            if placeholder in names:
                raise SpecError(f"{field}.query", f"{{{placeholder}}} is for a log of records (with 'records')")
        offsets = "next_offset" in exprs
        if offsets != ("complete" in exprs):
            raise SpecError(f"{field}.complete" if offsets else f"{field}.next_offset", "next_offset and complete go together")
        if offsets != ("offset" in names):
            raise SpecError(
                f"{field}.query",
                "an offset-based log must send {offset}" if offsets else "{offset} needs next_offset and complete",
            )


@dataclasses.dataclass(frozen=True)
class DeclarativeSpec:
    name: str
    operations: Mapping[str, Operation]
    record: Mapping[str, Any]  # field -> compiled JMESPath, or a mapping of them (progress, error)
    time_unit: str
    status_map: Mapping[str, JobStatus]
    capabilities: Mapping[str, bool]
    error_message: Any
    job_url: str | None = None  # template of the job's web page, with {job_id}

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> DeclarativeSpec:
        """Read a spec: its structure checked by the JSON Schema (spec_schema.py), then what the
        schema cannot see (templates, JMESPath, fields that depend on each other)."""
        if isinstance(options, Mapping) and not options:
            raise SpecError("operations", "the declarative dialect needs its spec in dialect_options (see docs/dialects.md)")
        validate(options)
        operations = {op: _operation(op, spec, f"operations.{op}") for op, spec in options["operations"].items()}
        record, time_unit = _record(options["record"])
        status_map = _status_map(options["status_map"])
        capabilities = _capabilities(options.get("capabilities", {}), operations)
        error_message = _compile_jmespath(options["error_message"], "error_message") if "error_message" in options else None
        job_url = _job_url(options["job_url"]) if "job_url" in options else None
        name = options.get("name", "declarative job API")
        return cls(name, operations, record, time_unit, status_map, capabilities, error_message, job_url)


def _job_url(value: str) -> str:
    template = _template(value, "job_url", frozenset({"job_id"}))
    if not template.startswith(("https://", "http://", "/")) or template.startswith("//"):
        raise SpecError("job_url", f"must be an http(s) URL or a path under the base URL (starting with '/'), got {template!r}")
    if "job_id" not in compile_template(template).names:
        raise SpecError("job_url", "must use {job_id}")
    return template


def _record(value: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    compiled: dict[str, Any] = {}
    for key, expr in value.items():
        if key == "time_unit":
            continue
        if isinstance(expr, Mapping):  # progress, or error as type and message
            compiled[key] = {k: _compile_jmespath(v, f"record.{key}.{k}") for k, v in expr.items()}
        else:
            compiled[key] = _compile_jmespath(expr, f"record.{key}")
    return compiled, str(value.get("time_unit", "s"))


def _status_map(value: Mapping[str, str]) -> dict[str, JobStatus]:
    mapped = {str(raw): JobStatus(ours.upper()) for raw, ours in value.items()}
    if JobStatus.SUCCEEDED not in mapped.values():
        raise SpecError("status_map", "maps nothing to SUCCEEDED, so no job could ever succeed")
    return mapped


def _capabilities(value: Mapping[str, bool], operations: Mapping[str, Operation]) -> dict[str, bool]:
    logs = operations.get("logs")
    possible = {
        "batch_lookup": ("get_many" in operations, "needs operations.get_many"),
        "idempotent_submit": (
            "idempotency_key" in operations["submit"].names,
            "needs operations.submit to send {idempotency_key}",
        ),
        "logs": (logs is not None, "needs operations.logs"),
        "log_offsets": (
            logs is not None and ("next_offset" in logs.exprs or "records" in logs.exprs),
            "needs operations.logs with next_offset",
        ),
    }
    flags: dict[str, bool] = {}
    for name, (available, why) in possible.items():
        wanted = value.get(name, available)
        if wanted and not available:
            raise SpecError(f"capabilities.{name}", why)
        flags[name] = wanted
    if flags["log_offsets"] and not flags["logs"]:
        raise SpecError("capabilities.log_offsets", "needs capabilities.logs")
    if logs is not None and "records" in logs.exprs and flags["logs"] and not flags["log_offsets"]:
        raise SpecError("capabilities.log_offsets", "a log of records is always read from a record offset; turn off logs instead")
    return flags


def _status_key(value: Any) -> str:
    # Status map keys are strings; a computed status (e.g. "state == 'done'") may be a boolean or number.
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


# -- the dialect ----------------------------------------------------------------------------------
class DeclarativeDialect(Dialect):
    """Speaks whatever API its spec describes.

    Built by :meth:`from_options`, it is also a :class:`BatchLookup` when the spec has
    ``get_many``, and an :class:`OffsetLogs` or :class:`WholeLogs` when it has ``logs`` (unless
    the spec's ``capabilities`` turn them off): the client sees exactly what the spec offers.
    """

    name = "declarative"

    def __init__(self, spec: DeclarativeSpec) -> None:
        self.spec = spec
        self.status_map = spec.status_map
        self.supports_idempotent_submit = spec.capabilities["idempotent_submit"]
        # Every record expression, "id" first: what a record gives them decides the Job it maps to.
        expressions = [spec.record["id"]]
        for name, compiled in spec.record.items():
            if name != "id":
                expressions.extend(compiled.values() if isinstance(compiled, Mapping) else [compiled])
        self._record_expressions: tuple[Any, ...] = tuple(expressions)
        # job id -> (the values of the record expressions, the Job they map to); see job_from_record
        self._mapped: dict[str, tuple[tuple[Any, ...], Job]] = {}
        get_many = spec.operations.get("get_many")
        self.max_batch = get_many.extra.get("max_batch", 100) if get_many else 100
        logs = spec.operations.get("logs")
        self.log_settle_s = logs.extra.get("settle_s", DEFAULT_LOG_SETTLE_S) if logs and spec.capabilities["logs"] else 0.0
        self.log_page_size = logs.extra.get("page_size", DEFAULT_LOG_PAGE_SIZE) if logs else DEFAULT_LOG_PAGE_SIZE
        self.log_cursor_paging = logs is not None and "cursor" in logs.names

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DeclarativeDialect:
        from jobservice_provider.presets import resolve  # presets are declarative specs shipped as package data

        spec = DeclarativeSpec.parse(resolve(options))
        caps = spec.capabilities
        logs = None
        if caps["logs"]:
            logs = "records" if "records" in spec.operations["logs"].exprs else "offsets" if caps["log_offsets"] else "whole"
        return _dialect_class(caps["batch_lookup"], logs)(spec)

    def _op(self, name: str) -> Operation:
        operation = self.spec.operations.get(name)
        if operation is None:
            raise InvalidRequestError(f"declarative dialect: the spec has no operations.{name}")
        return operation

    # -- records ----------------------------------------------------------------------------
    def _field(self, name: str, data: Any) -> Any:
        return _search(self.spec.record[name], data, f"record.{name}") if name in self.spec.record else None

    def job_from_record(self, record: Any, *, body: bytes | None = None) -> Job:
        """Read one job record with the spec's ``record`` expressions.

        A triggerer reads the same records over and over while jobs run (most checks find
        nothing changed), so a record whose expressions all give what they gave last time for
        its job is not mapped again: the Job mapped then is returned (mapping is a pure function
        of those values). The memo holds one entry per job id, at most ``MAPPED_RECORDS``.
        """
        if not isinstance(record, dict):
            return self._map(record, body)
        try:
            values = tuple(expression.search(record) for expression in self._record_expressions)
        except jmespath.exceptions.JMESPathError:
            return self._map(record, body)  # which names the expression that failed
        remembered = self._mapped.get(values[0]) if isinstance(values[0], str) else None
        if remembered is not None and remembered[0] == values:
            return remembered[1]
        job = self._map(record, body)
        if len(self._mapped) >= MAPPED_RECORDS:
            self._mapped.clear()
        self._mapped[job.id] = (values, job)
        return job

    def _map(self, record: Any, body: bytes | None) -> Job:
        try:
            if not isinstance(record, Mapping):
                raise ValueError("the selected job record is not an object")
            job_id = self._field("id", record)
            if isinstance(job_id, int | float) and not isinstance(job_id, bool):
                job_id = _text(job_id)
            if not isinstance(job_id, str) or not job_id:
                raise ValueError(f"record.id gave {job_id!r}, not a non-empty string")
            raw_status = _status_key(self._field("status", record))
            status = self.map_status(raw_status)
            error = None
            # Services often keep a human message in the same field in every state; it is an
            # error only once the job has failed or been cancelled.
            if status in FAILURE and "error" in self.spec.record:
                error = self._error(record, raw_status)
            meta = self._field("meta", record) or {}
            if not isinstance(meta, Mapping):
                raise ValueError("record.meta must give an object")
            version = self._field("version", record)
            if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
                raise ValueError(f"record.version must give an integer, got {version!r}")
            job_type, key = self._field("type", record), self._field("key", record)
            return Job(
                id=job_id,
                status=status,
                raw_status=raw_status,
                type=None if job_type is None else _text(job_type),
                key=None if key is None else _text(key),
                version=version,
                progress=self._progress(record),
                error=error,
                created_at=self._time("created_at", record),
                started_at=self._time("started_at", record),
                updated_at=self._time("updated_at", record),
                finished_at=self._time("finished_at", record),
                meta=dict(meta),
            )
        except (ValueError, TypeError) as exc:
            excerpt = body_excerpt(body) if body is not None else body_excerpt(repr(record))
            raise MalformedResponseError(f"Malformed job record ({exc}): {excerpt}") from exc

    def _error(self, record: Any, raw_status: str) -> RemoteError | None:
        spec = self.spec.record["error"]
        if isinstance(spec, Mapping):
            kind = _search(spec["type"], record, "record.error.type") if "type" in spec else None
            message = _search(spec["message"], record, "record.error.message") if "message" in spec else None
        else:
            kind, message = None, _search(spec, record, "record.error")
        if kind is None and message is None:
            return None
        return RemoteError(type=raw_status if kind is None else _text(kind), message="" if message is None else _text(message))

    def _progress(self, record: Any) -> Progress | None:
        spec = self.spec.record.get("progress")
        if not spec:
            return None
        values = {key: _search(expr, record, f"record.progress.{key}") for key, expr in spec.items()}
        for key in ("completed", "total"):
            value = values.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"record.progress.{key} must give a number, got {value!r}")
        if all(v is None for v in values.values()):
            return None
        message = values.get("message")
        return Progress(
            completed=values.get("completed") or 0,
            total=values.get("total"),
            message=None if message is None else _text(message),
        )

    def _time(self, name: str, record: Any) -> pendulum.DateTime | None:
        value = self._field(name, record)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return pendulum.from_timestamp(value / (1000 if self.spec.time_unit == "ms" else 1), tz="UTC")
        if isinstance(value, str) and _ISO_WITH_ZONE.search(value):
            with contextlib.suppress(ValueError):
                return _opt_time(value, f"record.{name}")  # the C ISO parser: ten times pendulum.parse's speed
        try:
            parsed = pendulum.parse(str(value))
        except Exception as exc:
            raise ValueError(f"record.{name} is not a timestamp: {value!r}") from exc
        if not isinstance(parsed, pendulum.DateTime):
            raise ValueError(f"record.{name} is not a date-time: {value!r}")
        return parsed

    def _job_in(self, operation: Operation, key: str, response: HttpResponse) -> Job:
        data = response.json()
        record = operation.search(key, data) if key in operation.exprs else data
        return self.job_from_record(record, body=response.body)

    def _fetch(self, job_id: Any, field: str, response: HttpResponse) -> FollowUp[Job]:
        if isinstance(job_id, int | float) and not isinstance(job_id, bool):
            job_id = _text(job_id)
        if not isinstance(job_id, str) or not job_id:
            raise MalformedResponseError(
                f"declarative dialect: {field} gave {job_id!r}, not a job id: {body_excerpt(response.body)}"
            )
        return FollowUp(self.get(job_id), self.parse_job, job_id)

    # -- submit -----------------------------------------------------------------------------
    def submit(self, job: SubmitRequest) -> HttpRequest:
        values = {
            "job_type": job.job_type,
            "params": dict(job.params),
            "idempotency_key": job.idempotency_key,
            "meta": dict(job.meta) if job.meta else None,
            "timeout_s": job.timeout_s,
        }
        return self._op("submit").request(values, idempotent=bool(job.idempotency_key) and self.supports_idempotent_submit)

    def parse_submit(self, response: HttpResponse) -> Job | FollowUp[Job]:
        operation = self._op("submit")
        if "id" in operation.exprs:
            return self._fetch(operation.search("id", response.json()), "operations.submit.id", response)
        return self._job_in(operation, "job", response)

    def reattach(self, response: HttpResponse, idempotency_key: str) -> FollowUp[Job] | None:
        duplicate = self._op("submit").extra.get("duplicate")
        if not duplicate or response.status not in duplicate["status"]:
            return None
        contains = duplicate["body_contains"]
        if contains is not None and contains.encode() not in response.body:
            return None
        job_id = compile_template(duplicate["id"]).render({"idempotency_key": idempotency_key})
        return FollowUp(self.get(_text(job_id)), self.parse_job, _text(job_id))

    # -- lookups ----------------------------------------------------------------------------
    def get(self, job_id: str) -> HttpRequest:
        return self._op("get").request({"job_id": job_id})

    def parse_job(self, response: HttpResponse) -> Job:
        return self._job_in(self._op("get"), "job", response)

    def _records(self, operation: Operation, response: HttpResponse) -> list[Job]:
        records = operation.search("jobs", response.json())
        if not isinstance(records, list):
            raise MalformedResponseError(
                f"declarative dialect: operations.{operation.name}.jobs gave no list: {body_excerpt(response.body)}"
            )
        return [self.job_from_record(record, body=response.body) for record in records]

    def list_jobs(self, query: ListQuery, *, page_size: int | None = None, cursor: str | None = None) -> HttpRequest:
        return self._op("list").request({"limit": page_size, "cursor": cursor})

    def parse_page(self, response: HttpResponse) -> Page:
        operation = self._op("list")
        cursor = operation.search("next_cursor", response.json()) if "next_cursor" in operation.exprs else None
        return Page(self._records(operation, response), None if cursor in (None, "") else _text(cursor))

    # -- cancel, result, logs, health -------------------------------------------------------
    def cancel(self, job_id: str) -> HttpRequest:
        return self._op("cancel").request({"job_id": job_id})

    def parse_cancel(self, response: HttpResponse, job_id: str) -> Job | FollowUp[Job]:
        operation = self._op("cancel")
        if "job" in operation.exprs:
            return self._job_in(operation, "job", response)
        if "id" in operation.exprs:
            return self._fetch(operation.search("id", response.json()), "operations.cancel.id", response)
        return FollowUp(self.get(job_id), self.parse_job, job_id)

    def result(self, job_id: str) -> HttpRequest:
        if "result" in self.spec.operations:
            return self._op("result").request({"job_id": job_id})
        return self.get(job_id)

    def parse_result(self, response: HttpResponse, job_id: str = "") -> Any:
        operation = self.spec.operations.get("result")
        if operation is None:
            record = self._op("get")
            data = response.json()
            data = record.search("job", data) if "job" in record.exprs else data
            return self._field("result", data) if "result" in self.spec.record else data
        value = operation.search("result", response.json()) if "result" in operation.exprs else response.json()
        if value is None and "missing" in operation.extra:
            # The service answered, but holds no result for this job: the spec says what to do.
            raise PermanentError(f"Job {job_id} has no result: {operation.extra['missing']}")
        match operation.extra.get("parse"):
            case "json":
                if not isinstance(value, str):
                    raise MalformedResponseError(f"Job {job_id}: operations.result.result gave no JSON text to parse")
                try:
                    return json.loads(value)
                except ValueError:
                    raise MalformedResponseError(f"Job {job_id}: the result is not JSON: {body_excerpt(value)}") from None
            case "json_last_line":
                if not isinstance(value, str):
                    raise MalformedResponseError(f"Job {job_id}: operations.result.result gave no text to read a line from")
                return last_json_line(value, f"Job {job_id}")
        return value

    def health(self) -> HttpRequest:
        if "health" in self.spec.operations:
            return self._op("health").request({})
        if "list" in self.spec.operations:
            return self.list_jobs(ListQuery(), page_size=1)
        raise ConfigurationError("declarative dialect: the spec has neither operations.health nor operations.list to test with")

    def parse_health(self, response: HttpResponse) -> dict[str, Any]:
        operation = self.spec.operations.get("health")
        version = "?"
        if operation is not None and "version" in operation.exprs:
            found = operation.search("version", response.json())
            version = "?" if found is None else _text(found)
        return {"service": self.spec.name, "version": version, "api": "declarative"}

    def job_url(self, job: Job, base_url: str) -> str | None:
        """The spec's ``job_url`` template with the job id filled in, percent-encoded."""
        if self.spec.job_url is None:
            return None
        return web_url(compile_template(self.spec.job_url).render({"job_id": job.id}, escape=True), base_url)

    def error_for(self, response: HttpResponse, *, job_id: str | None = None) -> JobServiceError:
        detail = ""
        problem: dict[str, Any] = {}
        try:
            data = json.loads(response.body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            problem = data
            found = _search(self.spec.error_message, data, "error_message") if self.spec.error_message else None
            if found is None:
                found = next((data[k] for k in ("detail", "title", "message", "error") if isinstance(data.get(k), str)), None)
            detail = "" if found is None else body_excerpt(_text(found))
        if not detail:
            detail = text_error_detail(response.body) or response.reason
        return classify_error(response, detail, job_id=job_id, problem=problem)


class _BatchLookup(DeclarativeDialect, BatchLookup):
    """A spec with ``operations.get_many``."""

    def get_many(self, job_ids: Sequence[str]) -> HttpRequest:
        if not 0 < len(job_ids) <= self.max_batch:
            raise InvalidRequestError(f"a batch lookup takes 1 to {self.max_batch} job ids, got {len(job_ids)}")
        return self._op("get_many").request({"job_ids": list(job_ids)})

    def parse_many(self, response: HttpResponse, job_ids: Sequence[str] = ()) -> tuple[list[Job], list[str]]:
        jobs = self._records(self._op("get_many"), response)
        found = {job.id for job in jobs}
        return jobs, [job_id for job_id in job_ids if job_id not in found]


class _OffsetLogs(DeclarativeDialect, OffsetLogs):
    """A spec whose ``operations.logs`` reads from ``{offset}`` (with ``next_offset`` and ``complete``)."""

    def logs(self, job_id: str, offset: int) -> HttpRequest:
        return self._op("logs").request({"job_id": job_id, "offset": offset})

    def parse_logs(self, response: HttpResponse) -> LogChunk:
        operation = self._op("logs")
        data = response.json()
        text = operation.search("text", data)
        text = "" if text is None else _text(text)
        next_offset, complete = operation.search("next_offset", data), operation.search("complete", data)
        if isinstance(next_offset, bool) or not isinstance(next_offset, int):
            raise MalformedResponseError(f"operations.logs.next_offset gave {next_offset!r}, not an integer")
        # Where the text starts is a guess (U+FFFD may stand for fewer bytes); readers count from next_offset.
        start = max(0, next_offset - len(text.encode("utf-8", "surrogatepass")))
        return LogChunk(text, start, next_offset, bool(complete))


class _RecordLogs(DeclarativeDialect, RecordLogs):
    """A spec whose ``operations.logs`` answers a list of records (``records``), each a line (``line``)."""

    def log_records(self, job_id: str, offset: int, cursor: str | None = None) -> HttpRequest:
        return self._op("logs").request({"job_id": job_id, "offset": offset, "limit": self.log_page_size, "cursor": cursor})

    def parse_log_records(self, response: HttpResponse, offset: int) -> RecordPage:
        operation = self._op("logs")
        request = {"offset": offset, "limit": self.log_page_size}
        data = response.json()
        next_cursor = None
        if self.log_cursor_paging:
            found = operation.search("next_cursor", data, request)
            next_cursor = None if found in (None, "") else _text(found)
        records = operation.search("records", data, request)
        if records is None:
            records = []
        if not isinstance(records, list):
            raise MalformedResponseError(
                f"declarative dialect: operations.logs.records gave no list of records: {body_excerpt(response.body)}"
            )
        unpaged = not ({"offset", "cursor"} & operation.names) and not isinstance(operation.exprs["records"], RequestExpression)
        if unpaged:
            records = records[offset:]  # the service sends every record each time, and the spec does not slice
        lines = []
        for record in records:
            line = operation.search("line", record, request)
            lines.append("" if line is None else _text(line))
        return RecordPage(lines, next_cursor)


class _WholeLogs(DeclarativeDialect, WholeLogs):
    """A spec whose ``operations.logs`` returns the whole log every time."""

    def whole_log(self, job_id: str) -> HttpRequest:
        return self._op("logs").request({"job_id": job_id})

    def parse_whole_log(self, response: HttpResponse) -> str:
        text = self._op("logs").search("text", response.json())
        return "" if text is None else _text(text)


@functools.cache
def _dialect_class(batch_lookup: bool, logs: str | None) -> type[DeclarativeDialect]:
    """The declarative dialect with the capabilities a spec offers (one class per combination)."""
    bases: list[type[DeclarativeDialect]] = []
    if batch_lookup:
        bases.append(_BatchLookup)
    if logs == "records":
        bases.append(_RecordLogs)
    elif logs == "offsets":
        bases.append(_OffsetLogs)
    elif logs == "whole":
        bases.append(_WholeLogs)
    if not bases:
        return DeclarativeDialect
    if len(bases) == 1:
        return bases[0]
    composed: type[DeclarativeDialect] = type("DeclarativeDialect", tuple(bases), {"__doc__": DeclarativeDialect.__doc__})
    return composed
