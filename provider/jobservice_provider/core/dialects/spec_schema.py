"""The declarative spec as data: its JSON Schema, the validation that names the bad field, and
the reference in docs/dialects.md generated from it (``scripts/spec_reference.py``).

The schema checks the structure (which keys, of what type, which values); what depends on
several fields at once or on the content of a string (placeholders in templates, valid JMESPath,
``get`` using ``{job_id}``, a capability the spec cannot back) is checked in code, in
``declarative.py``, after the schema passed. ``x-placeholders`` (per operation: the template
variables it may use) and ``x-error`` (what to say when a value breaks a rule) are this project's
own annotations, which JSON Schema validators ignore.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from jobservice_provider.core.errors import ConfigurationError
from jobservice_provider.core.status import JobStatus

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
JMESPATH = {"type": "string", "minLength": 1, "x-error": "must be a JMESPath expression (a non-empty string)"}
TEMPLATE = {
    "type": ["string", "number", "boolean"],
    "x-error": "must be a string template (numbers and booleans are taken as their text)",
}


def _jmespath(description: str) -> dict[str, Any]:
    return {**JMESPATH, "description": description}


def _operation(description: str, placeholders: list[str], own: dict[str, Any], method: str = "GET") -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "x-placeholders": placeholders,
        "properties": {
            "method": {
                "type": "string",
                "pattern": "^(?i:" + "|".join(METHODS) + ")$",
                "default": method,
                "description": "the HTTP method: " + ", ".join(METHODS) + " (any case)",
                "x-error": "must be one of " + ", ".join(METHODS),
            },
            "path": {
                "type": "string",
                "pattern": "^/",
                "description": "required; appended to the connection's base URL. Placeholder values are "
                "URL-escaped as one path segment (`/`, `?`, `#`, `..` cannot escape the path)",
                "x-error": "must start with '/' (it is appended to the connection's base URL)",
            },
            "query": {
                "type": "object",
                "additionalProperties": TEMPLATE,
                "description": "parameter → template. A list value (`{job_ids}`) repeats the parameter; "
                "a null value leaves it out",
            },
            "headers": {
                "type": "object",
                "additionalProperties": TEMPLATE,
                "description": "header → template; null values are left out. `Authorization` is refused: "
                "the token goes in the connection's password field",
            },
            "body": {"description": "a JSON template (not with GET); object members that render to null are left out"},
            **own,
        },
        "required": ["path"],
        "additionalProperties": False,
    }


_JOB_IN_RESPONSE = _jmespath("the job record in the response (default: the whole response)")
_JOBS = _jmespath("required: the list of job records in the response")

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://github.com/jobservice/airflow-provider-jobservice/docs/declarative-spec.schema.json",
    "title": "Declarative dialect spec (the connection's dialect_options)",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "the service's name, for messages and the connection test"},
        "operations": {
            "type": "object",
            "description": "how each generic operation is sent and read; `submit` and `get` are required",
            "properties": {
                "submit": _operation(
                    "start a job",
                    ["job_type", "params", "idempotency_key", "meta", "timeout_s"],
                    {
                        "job": _JOB_IN_RESPONSE,
                        "id": _jmespath("instead of `job`: the new job's id in the response; the job is then fetched with `get`"),
                        "duplicate": {
                            "type": "object",
                            "description": "for services that refuse a repeated idempotency key instead of returning the same "
                            "job: a response with one of these statuses (whose body contains the text) is the job whose id "
                            "is the `id` template; it is fetched",
                            "properties": {
                                "status": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {"type": "integer", "minimum": 400, "maximum": 599},
                                    "description": "HTTP error statuses, e.g. `[409]`",
                                    "x-error": "must be a non-empty list of HTTP error statuses (400-599)",
                                },
                                "body_contains": {"type": "string", "minLength": 1, "description": "text the body must contain"},
                                "id": {
                                    **TEMPLATE,
                                    "description": "required: the template of the existing job's id (placeholder: "
                                    "`idempotency_key`), e.g. `{idempotency_key}`",
                                },
                            },
                            "required": ["status", "id"],
                            "additionalProperties": False,
                        },
                    },
                    method="POST",
                ),
                "get": _operation("look up one job", ["job_id"], {"job": _JOB_IN_RESPONSE}),
                "get_many": _operation(
                    "look up many jobs in one request (the batch lookup); ids not returned are missing",
                    ["job_ids"],
                    {
                        "jobs": _JOBS,
                        "max_batch": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                            "description": "ids per request",
                            "x-error": "must be an integer from 1 to 1000",
                        },
                    },
                ),
                "list": _operation(
                    "list jobs, page by page",
                    ["limit", "cursor"],
                    {"jobs": _JOBS, "next_cursor": _jmespath("the next page's cursor (null ends the listing)")},
                ),
                "cancel": _operation(
                    "cancel a job",
                    ["job_id"],
                    {
                        "job": _jmespath("the job record in the response"),
                        "id": _jmespath("the job's id in the response; then it is fetched"),
                    },
                    method="POST",
                ),
                "result": _operation(
                    "the result of a succeeded job (without it: `record.result` on the `get` response, or the record)",
                    ["job_id"],
                    {
                        "result": _jmespath("the result in the response (default: the whole response)"),
                        "parse": {
                            "enum": ["json", "json_last_line"],
                            "description": "`json`: the value is JSON text; `json_last_line`: the last non-empty line of "
                            "the text is",
                            "x-error": "must be one of json, json_last_line",
                        },
                        "missing": {
                            "type": "string",
                            "pattern": "\\S",
                            "description": "(text) the message when `result` finds nothing (null), saying what to do; "
                            "the task then fails with `Job ID has no result: <missing>`",
                            "x-error": "must be a message (a non-empty string): what to do when a job has no result",
                        },
                    },
                ),
                "logs": _operation(
                    "a job's log. As text: from an offset (`text`, with `next_offset` and `complete`, and `{offset}` "
                    "sent), or the whole log on every call (offsets are then counted on our side). As a list of "
                    "records: `records` and `line`, paged by `{offset}` and `{limit}` or by `{cursor}` and "
                    "`next_cursor` (see below)",
                    ["job_id", "offset", "limit", "cursor"],
                    {
                        "text": _jmespath("a log as text: the text in the response"),
                        "next_offset": _jmespath("a log as text: where the next read starts (with `complete`)"),
                        "complete": _jmespath("a log as text: whether the log is complete (with `next_offset`)"),
                        "records": _jmespath("a log of records: the list of records in the response"),
                        "line": _jmespath("a log of records: a record's text"),
                        "page_size": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 10_000,
                            "default": 100,
                            "description": "a log of records: the most records one request returns (sent as `{limit}`)",
                            "x-error": "must be an integer from 1 to 10000",
                        },
                        "next_cursor": _jmespath("a log of records paged by `{cursor}`: the next page's cursor"),
                        "settle_s": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 300,
                            "default": 2,
                            "description": "seconds the final log copy reads on after the job ended, until the log "
                            "stopped growing",
                            "x-error": "must be a number of seconds from 0 to 300",
                        },
                    },
                ),
                "health": _operation(
                    "the connection test (without it: `list`)", [], {"version": _jmespath("the service's version")}
                ),
            },
            "required": ["submit", "get"],
            "additionalProperties": False,
        },
        "record": {
            "type": "object",
            "description": "JMESPath expressions evaluated on one job record",
            "properties": {
                "id": _jmespath("required: the job's id (numbers are taken as text)"),
                "status": _jmespath(
                    "required: the status, looked up in `status_map` (a computed boolean or number by its "
                    'JSON spelling: `"true"`, `"3"`)'
                ),
                "type": _jmespath("the job type"),
                "key": _jmespath("the idempotency key"),
                "version": _jmespath("an integer that changes with every change of the record"),
                "progress": {
                    "type": "object",
                    "description": "how far the job has come",
                    "properties": {
                        "completed": _jmespath("a number"),
                        "total": _jmespath("a number"),
                        "message": _jmespath("text"),
                    },
                    "additionalProperties": False,
                    "x-error": "must be an object of JMESPath expressions: completed, total, message",
                },
                "error": {
                    "description": "read once the job is FAILED or CANCELLED (services often keep a message in the same "
                    "field in every state): an expression for the message, or an object of `type` and `message`",
                    "oneOf": [
                        JMESPATH,
                        {
                            "type": "object",
                            "properties": {"type": JMESPATH, "message": JMESPATH},
                            "additionalProperties": False,
                        },
                    ],
                    "x-error": "must be a JMESPath expression or an object of type and message",
                },
                "result": _jmespath("the result, when there is no `result` operation"),
                "meta": _jmespath("an object of labels"),
                "created_at": _jmespath("when the job was created: an ISO 8601 string, or a number in `time_unit`"),
                "started_at": _jmespath("when it started"),
                "updated_at": _jmespath("when its record last changed"),
                "finished_at": _jmespath("when it ended"),
                "time_unit": {
                    "enum": ["s", "ms"],
                    "default": "s",
                    "description": "the unit of numeric times",
                    "x-error": "must be 's' or 'ms' (for numeric times)",
                },
            },
            "required": ["id", "status"],
            "additionalProperties": False,
        },
        "status_map": {
            "type": "object",
            "description": "the service's status value → ours; at least one must map to SUCCEEDED. Anything else is "
            "unknown: the wait keeps going",
            "minProperties": 1,
            "additionalProperties": {
                "type": "string",
                "pattern": "^(?i:" + "|".join(status.value for status in JobStatus) + ")$",
                "x-error": "{value} is not one of " + ", ".join(status.value for status in JobStatus),
            },
        },
        "capabilities": {
            "type": "object",
            "description": "each derived from the spec; `false` stops using one, `true` where the spec cannot back it "
            "is an error",
            "properties": {
                "batch_lookup": {"type": "boolean", "description": "on with `operations.get_many`"},
                "idempotent_submit": {
                    "type": "boolean",
                    "description": "on when `submit` sends `{idempotency_key}`; a submit is then retried after a "
                    "transient error (otherwise sent once)",
                },
                "logs": {"type": "boolean", "description": "on with `operations.logs`"},
                "log_offsets": {"type": "boolean", "description": "on with `operations.logs.next_offset`"},
            },
            "additionalProperties": False,
        },
        "error_message": _jmespath(
            "the message in a JSON error body (default: `detail`, `title`, `message` or `error`; for text bodies, "
            "their last line)"
        ),
        "job_url": {
            "type": "string",
            "description": "the job's web page, with `{job_id}`: an http(s) URL or a path under the base URL",
            "x-error": "must be a string template with {job_id}",
        },
    },
    "required": ["operations", "record", "status_map"],
    "additionalProperties": False,
}


@functools.cache
def _validator() -> Any:
    import jsonschema  # comes with Airflow; imported when a spec is first read, not with the provider

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA)


class SpecError(ConfigurationError):
    """An invalid declarative spec; ``field`` is the dotted path of the bad member."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def validate(spec: Any) -> None:
    """Raise :class:`SpecError` naming the first bad field the schema finds (none: the structure is right)."""
    import jsonschema.exceptions

    errors = list(_validator().iter_errors(spec))
    if errors:
        field, problem = _explain(jsonschema.exceptions.best_match(errors))
        raise SpecError(field or "dialect_options", problem)


_TYPES = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer", "boolean": "true or false"}
_PYTHON_TYPES = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}


def _explain(error: Any) -> tuple[str, str]:
    """The field path and the problem, in this project's words."""
    path = ".".join(str(part) for part in error.absolute_path)
    instance, schema = error.instance, error.schema
    got = "null" if instance is None else _PYTHON_TYPES.get(type(instance), type(instance).__name__)
    match error.validator:
        case "required":
            missing = str(next(key for key in error.validator_value if key not in instance))
            what = schema.get("properties", {}).get(missing, {}).get("description", "")
            return _join(path, missing), "is required" + (f": {what.removeprefix('required: ')}" if what else "")
        case "additionalProperties":
            allowed = list(schema.get("properties", {}))
            unknown = next(key for key in instance if key not in allowed)
            return _join(path, unknown), f"unknown key; allowed: {', '.join(allowed)}"
        case "minProperties":
            return path, "is empty"
    shown = repr(instance) if isinstance(instance, str | int | float | bool) else got
    if "x-error" in schema:
        problem = str(schema["x-error"])
        return path, problem.replace("{value}", shown) if "{value}" in problem else f"{problem}, got {shown}"
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return path, f"must be {' or '.join(_TYPES.get(str(t), str(t)) for t in wanted)}, got {shown}"
    return path, error.message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def placeholders(operation: str) -> frozenset[str]:
    """The template variables ``operation`` may use."""
    return frozenset(SCHEMA["properties"]["operations"]["properties"][operation]["x-placeholders"])


def own_keys(operation: str) -> frozenset[str]:
    """The keys ``operation`` has besides method, path, query, headers and body."""
    request = {"method", "path", "query", "headers", "body"}
    return frozenset(SCHEMA["properties"]["operations"]["properties"][operation]["properties"]) - request


def operation_names() -> tuple[str, ...]:
    return tuple(SCHEMA["properties"]["operations"]["properties"])


def schema_json() -> str:
    """The schema as the JSON document docs/declarative-spec.schema.json holds (for editors)."""
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"


def reference_markdown() -> str:
    """The spec reference of docs/dialects.md, generated from the schema."""
    top = SCHEMA["properties"]
    lines = [
        "<!-- generated from core/dialects/spec_schema.py by scripts/spec_reference.py; edit there -->",
        "",
        "Top level (unknown keys are errors):",
        "",
        "| key | required | meaning |",
        "|---|---|---|",
    ]
    for key, sub in top.items():
        lines.append(f"| `{key}` | {'yes' if key in SCHEMA['required'] else ''} | {_describe(sub)} |")
    lines += ["", "**Operations**: each has these request keys:", "", "| key | meaning |", "|---|---|"]
    operations = top["operations"]["properties"]
    for key, sub in operations["get"]["properties"].items():
        if key in ("method", "path", "query", "headers", "body"):
            lines.append(f"| `{key}` | {_describe(sub, key == 'method')} |")
    lines += [
        "",
        "and its own:",
        "",
        "| operation | required | what it is | placeholders | own keys (JMESPath unless noted) |",
        "|---|---|---|---|---|",
    ]
    for name, sub in operations.items():
        own = [f"`{key}`: {_describe(value)}" for key, value in sub["properties"].items() if key not in _REQUEST]
        variables = ", ".join(f"`{p}`" for p in sub["x-placeholders"]) or "—"
        method = sub["properties"]["method"]["default"]
        what = sub["description"] + ("" if method == "GET" else f" (default method {method})")
        needed = "yes" if name in top["operations"]["required"] else ""
        lines.append(f"| `{name}` | {needed} | {what} | {variables} | {'; '.join(own) or '—'} |")
    lines += ["", "**Record** (`record`):", "", "| key | required | meaning |", "|---|---|---|"]
    record = top["record"]
    for key, sub in record["properties"].items():
        required = key in record["required"]
        lines.append(f"| `{key}` | {'yes' if required else ''} | {_describe(sub).removeprefix('required: ')} |")
    lines += ["", "**Capabilities** (`capabilities`, true or false):", "", "| key | meaning |", "|---|---|"]
    for key, sub in top["capabilities"]["properties"].items():
        lines.append(f"| `{key}` | {sub['description']} |")
    statuses = ", ".join(f"`{status.value}`" for status in JobStatus)
    lines += ["", f"**Status map** (`status_map`): the service's value → {statuses}.", ""]
    return "\n".join(lines)


_REQUEST = ("method", "path", "query", "headers", "body")


def _describe(schema: Mapping[str, Any], with_default: bool = False) -> str:
    text = str(schema.get("description", ""))
    if "properties" in schema and schema.get("type") == "object" and "x-placeholders" not in schema:
        members = ", ".join(f"`{key}`" for key in schema["properties"])
        text += f" (object: {members})" if text else f"object: {members}"
    if "enum" in schema:
        text += " (one of " + ", ".join(f"`{value}`" for value in schema["enum"]) + ")"
    if "default" in schema and (with_default or "enum" in schema or schema.get("type") in ("integer", "number")):
        text += f"; default `{schema['default']}`"
    if "minimum" in schema and "maximum" in schema:
        text += f"; {schema['minimum']} to {schema['maximum']}"
    return text.replace("|", "\\|")
