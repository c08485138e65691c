"""The declarative dialect's pure parts: spec validation naming the field, templates, URL escaping, parsing."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pendulum
import pytest

from jobservice_provider.core.config import DIALECTS, ServiceConfig
from jobservice_provider.core.dialects import (
    BUILT_IN,
    BatchLookup,
    DeclarativeDialect,
    FollowUp,
    ListQuery,
    NativeDialect,
    OffsetLogs,
    SubmitRequest,
    WholeLogs,
    get_dialect,
    slice_log,
)
from jobservice_provider.core.dialects.declarative import SpecError, compile_template, render_json
from jobservice_provider.core.errors import ConfigurationError, InvalidRequestError, JobNotFoundError, MalformedResponseError
from jobservice_provider.core.http import HttpResponse
from jobservice_provider.core.job import Job
from jobservice_provider.core.status import JobStatus

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dialects.md"


def doc_spec(name: str) -> dict[str, Any]:
    match = re.search(rf"<!-- spec:{name} -->\s*```json\n(.*?)\n```", DOCS.read_text(), re.S)
    assert match, f"docs/dialects.md has no spec:{name} block"
    spec: dict[str, Any] = json.loads(match.group(1))
    return spec


INHOUSE = doc_spec("inhouse")
DIALECT = DeclarativeDialect.from_options(INHOUSE)
RUN = {
    "run_id": "r-17",
    "state": "busy",
    "pipeline": "export",
    "done": 3,
    "of": 10,
    "note": "loading",
    "problem": "still fine",
    "submitted": "2026-01-01T10:00:00Z",
    "labels": {"team": "data"},
}


def response(status: int, body: Any, content_type: str = "application/json") -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status=status, headers={"content-type": content_type}, body=raw, url="GET http://svc/x")


def test_registry_matches_the_config_names() -> None:
    assert tuple(BUILT_IN) == DIALECTS == ("native", "ray", "declarative")
    assert isinstance(get_dialect("native"), NativeDialect)
    assert get_dialect("declarative", INHOUSE) is get_dialect("declarative", json.dumps(INHOUSE, sort_keys=True))
    with pytest.raises(ConfigurationError, match="unknown dialect 'soap'"):
        get_dialect("soap")


def test_both_documented_specs_are_valid_and_capabilities_are_derived() -> None:
    # The capabilities a spec offers are the protocols its dialect implements.
    assert isinstance(DIALECT, BatchLookup) and isinstance(DIALECT, OffsetLogs) and not isinstance(DIALECT, WholeLogs)
    assert (DIALECT.max_batch, DIALECT.supports_idempotent_submit) == (50, True)
    ray = DeclarativeDialect.from_options(doc_spec("ray"))
    assert isinstance(ray, WholeLogs) and not isinstance(ray, BatchLookup | OffsetLogs)
    assert not isinstance(DeclarativeDialect.from_options({**INHOUSE, "capabilities": {"batch_lookup": False}}), BatchLookup)
    no_logs = DeclarativeDialect.from_options({**INHOUSE, "capabilities": {"logs": False, "log_offsets": False}})
    assert not isinstance(no_logs, OffsetLogs | WholeLogs) and isinstance(no_logs, BatchLookup)
    with pytest.raises(SpecError, match=re.escape("capabilities.batch_lookup: needs operations.get_many")):
        DeclarativeDialect.from_options({**doc_spec("ray"), "capabilities": {"batch_lookup": True}})


def mutate(path: str, value: Any) -> dict[str, Any]:
    """INHOUSE with the member at dotted ``path`` set to ``value`` (``...`` deletes it)."""
    spec = copy.deepcopy(INHOUSE)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("record.status", "state ==", "record.status: invalid JMESPath 'state =='"),
        ("record.progress.total", "of[", "record.progress.total: invalid JMESPath"),
        ("error_message", 7, "error_message: must be a JMESPath expression"),
        ("status_map", ..., "status_map: is required"),
        ("status_map", {}, "status_map: is empty"),
        ("status_map", {"done": "FINISHED"}, "status_map.done: 'FINISHED' is not one of QUEUED"),
        ("status_map", {"busy": "RUNNING"}, "status_map: maps nothing to SUCCEEDED"),
        ("capabilities", {"teleport": True}, "capabilities.teleport: unknown key"),
        ("capabilities", {"long_poll": True}, "capabilities.long_poll: unknown key"),
        ("capabilities", {"logs": "yes"}, "capabilities.logs: must be true or false"),
        ("capabilities", {"log_offsets": True, "logs": False}, "capabilities.log_offsets: needs capabilities.logs"),
        ("operations.get", ..., "operations.get: is required"),
        ("operations.delete_all", {"path": "/x"}, "operations.delete_all: unknown key"),
        (
            "operations.get.path",
            "/api/v2/runs/{jobid}",
            "operations.get.path: unknown placeholder {jobid}; this operation has: job_id",
        ),
        ("operations.get.path", "/api/v2/runs/latest", "operations.get.path: must use {job_id}"),
        ("operations.get.path", "api/v2/runs/{job_id}", "operations.get.path: must start with '/'"),
        ("operations.get.path", "/runs/{job_id", "operations.get.path: stray brace"),
        ("operations.get.body", {"x": 1}, "operations.get.body: a GET request has no body"),
        ("operations.get.timeout", 5, "operations.get.timeout: unknown key"),
        ("operations.submit.method", "FETCH", "operations.submit.method: must be one of GET"),
        ("operations.submit.body", {"when": "{today}"}, "operations.submit.body: unknown placeholder {today}"),
        ("operations.submit.headers", {"Authorization": "Bearer x"}, "operations.submit.headers: put the token"),
        ("operations.submit.id", "run.run_id", "operations.submit.id: give 'job'"),
        ("operations.submit.duplicate", {"status": [409]}, "operations.submit.duplicate.id: is required"),
        ("operations.submit.duplicate", {"status": [200], "id": "{idempotency_key}"}, "operations.submit.duplicate.status"),
        ("operations.submit.duplicate", {"status": [409], "id": "{job_type}"}, "duplicate.id: unknown placeholder {job_type}"),
        ("operations.logs.complete", ..., "operations.logs.complete: next_offset and complete go together"),
        ("operations.logs.text", ..., "operations.logs.text: is required"),
        ("operations.get_many.max_batch", 0, "operations.get_many.max_batch: must be an integer from 1 to 1000"),
        ("operations.get_many.query", {}, "operations.get_many.query: must use {job_ids}"),
        ("operations.result.parse", "yaml", "operations.result.parse: must be one of json, json_last_line"),
        ("record.id", ..., "record.id: is required"),
        ("record.time_unit", "days", "record.time_unit: must be 's' or 'ms'"),
        ("record.progress", "done", "record.progress: must be an object"),
        ("record.colour", "c", "record.colour: unknown key"),
        ("statusmap", {}, "statusmap: unknown key"),
        ("operations", [], "operations: must be an object"),
    ],
)
def test_an_invalid_spec_names_the_bad_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        DeclarativeDialect.from_options(mutate(path, value))


def test_the_connection_read_rejects_a_bad_spec_naming_connection_and_field() -> None:
    extra = {"dialect": "declarative", "dialect_options": mutate("record.status", "state ==")}
    with pytest.raises(ConfigurationError) as info:
        ServiceConfig.from_connection_fields(conn_id="inhouse", host="https://runs.internal", extra=extra)
    assert "connection 'inhouse': extra 'dialect_options' (dialect 'declarative'): record.status: invalid JMESPath" in str(
        info.value
    )
    for extra, message in [
        ({"dialect": "declarative"}, "needs its spec in dialect_options"),
        ({"dialect": "native", "dialect_options": {"a": 1}}, "native dialect takes no dialect_options"),
        ({"dialect": "ray", "dialect_options": {"a": 1}}, "ray dialect's dialect_options take only 'job_types' (got a)"),
        ({"dialect": "declarative", "dialect_options": "{oops"}, "'dialect_options' is not valid JSON"),
        ({"dialect": "declarative", "dialect_options": 3}, "'dialect_options' must be dict or str"),
    ]:
        with pytest.raises(ConfigurationError, match=re.escape(message)):
            ServiceConfig.from_connection_fields(conn_id="c", host="http://h", extra=extra)


def test_a_valid_spec_is_kept_as_canonical_json_in_a_hashable_config() -> None:
    config = ServiceConfig.from_connection_fields(
        conn_id="c", host="http://h", extra={"dialect": "declarative", "dialect_options": json.dumps(INHOUSE)}
    )
    assert json.loads(config.dialect_options) == INHOUSE and hash(config)
    assert ServiceConfig.from_connection_fields(conn_id="c", host="http://h").dialect_options == ""


def test_templates_keep_types_interpolate_text_and_drop_nulls() -> None:
    values = {"params": {"day": "2026-01-01", "n": 3}, "meta": None, "job_type": "export"}
    assert render_json(
        {
            "args": "{params}",
            "day": "{params.day}",
            "label": "{job_type}-{params.n}",
            "meta": "{meta}",
            "lit": "{{x}}",
            "k": [1, "{params.n}"],
        },
        values,
    ) == {"args": {"day": "2026-01-01", "n": 3}, "day": "2026-01-01", "label": "export-3", "lit": "{x}", "k": [1, 3]}
    assert compile_template("/a/{job_id}/b").names == frozenset({"job_id"})
    with pytest.raises(ValueError, match="stray brace"):
        compile_template("/a/}")


@pytest.mark.parametrize("job_id", ["a/b", "../health", "x?y=1#z", "sp ace", "é"])
def test_path_values_are_url_escaped(job_id: str) -> None:
    from urllib.parse import quote

    path = DIALECT.get(job_id).path
    assert path == "/api/v2/runs/" + quote(job_id, safe="") and path.count("/") == 4
    with pytest.raises(InvalidRequestError, match="path placeholder \\{job_id\\} is empty"):
        DIALECT.get("")


def test_submit_and_batch_requests() -> None:
    request = DIALECT.submit(
        SubmitRequest("export", {"day": "2026-01-01"}, idempotency_key="airflow:d:t:r:-1", meta={"team": "data"})
    )
    assert (request.method, request.path, request.idempotent) == ("POST", "/api/v2/runs", True)
    assert request.headers == (("X-Team", "data-eng"),)
    assert request.json == {
        "pipeline": "export",
        "args": {"day": "2026-01-01"},
        "dedupe_key": "airflow:d:t:r:-1",
        "labels": {"team": "data"},
    }
    assert DIALECT.submit(SubmitRequest("export")).json == {"pipeline": "export", "args": {}}
    assert not DIALECT.submit(SubmitRequest("export")).idempotent
    assert DIALECT.get_many(["a", "b/c"]).params == (("id", "a"), ("id", "b/c"))
    assert DIALECT.list_jobs(ListQuery(), page_size=5).params == ()
    assert DIALECT.list_jobs(ListQuery(), cursor="p2").params == (("page", "p2"),)
    assert DIALECT.logs("r 1", 120).params == (("from", "120"),)
    assert (DIALECT.cancel("r-1").method, DIALECT.cancel("r-1").path) == ("DELETE", "/api/v2/runs/r-1")


def test_parse_job_with_progress_error_times_and_unknown_status() -> None:
    job = DIALECT.parse_job(response(200, RUN))
    assert (job.id, job.status, job.type, job.meta) == ("r-17", JobStatus.RUNNING, "export", {"team": "data"})
    assert job.progress is not None and job.progress.describe() == "3/10 (30%) loading"
    assert job.error is None  # "problem" is read only once the job failed
    assert job.created_at == pendulum.datetime(2026, 1, 1, 10, tz="UTC")
    failed = DIALECT.parse_job(response(200, {**RUN, "state": "broken", "problem": "disk full"}))
    assert failed.status is JobStatus.FAILED and failed.error is not None and str(failed.error) == "broken: disk full"
    odd = DIALECT.parse_job(response(200, {**RUN, "state": "paused"}))
    assert (odd.status, odd.raw_status) == (None, "paused")
    with pytest.raises(MalformedResponseError, match=re.escape("record.id gave None")):
        DIALECT.parse_job(response(200, {"state": "busy"}))
    with pytest.raises(MalformedResponseError, match=re.escape("record.created_at is not a timestamp")):
        DIALECT.parse_job(response(200, {**RUN, "submitted": "soon"}))


def test_done_when_field_x_equals_y() -> None:
    spec = {
        "operations": {"submit": {"path": "/exports", "id": "id"}, "get": {"path": "/exports/{job_id}"}},
        "record": {"id": "id", "status": "phase == 'finished'", "finished_at": "ended", "time_unit": "ms"},
        "status_map": {"true": "SUCCEEDED", "false": "RUNNING"},
    }
    dialect = DeclarativeDialect.from_options(spec)
    running = dialect.parse_job(response(200, {"id": 5, "phase": "copying"}))
    assert (running.id, running.status, running.raw_status) == ("5", JobStatus.RUNNING, "false")
    done = dialect.parse_job(response(200, {"id": 5, "phase": "finished", "ended": 1767261600000}))
    assert done.status is JobStatus.SUCCEEDED and done.finished_at == pendulum.datetime(2026, 1, 1, 10, tz="UTC")
    # No result operation and no record.result: the result is the record itself.
    assert dialect.parse_result(response(200, {"id": 5, "phase": "finished"})) == {"id": 5, "phase": "finished"}
    follow = dialect.parse_submit(response(201, {"id": 5}))
    assert isinstance(follow, FollowUp) and follow.request.path == "/exports/5"


def test_batch_listing_logs_and_results() -> None:
    jobs, missing = DIALECT.parse_many(response(200, {"items": [RUN]}), ["r-17", "r-404"])
    assert [j.id for j in jobs] == ["r-17"] and missing == ["r-404"]
    page = DIALECT.parse_page(response(200, {"items": [RUN, {**RUN, "run_id": "r-18"}], "next_page": "p2"}))
    assert [j.id for j in page.jobs] == ["r-17", "r-18"] and page.next_cursor == "p2"
    chunk = DIALECT.parse_logs(response(200, {"text": "b\n", "next": 6, "eof": True}))
    assert (chunk.data, chunk.offset, chunk.next_offset, chunk.complete) == ("b\n", 4, 6, True)
    assert DIALECT.parse_result(response(200, {"output": {"rows": 9}}), "r-17") == {"rows": 9}
    ray = DeclarativeDialect.from_options(doc_spec("ray"))
    assert ray.parse_result(response(200, {"logs": 'x\n{"rows": 9}\n'}), "j") == {"rows": 9}
    assert ray.parse_whole_log(response(200, {"logs": "a\nb\n"})) == "a\nb\n"


def test_errors_use_the_spec_message_and_reattach_on_duplicates() -> None:
    error = DIALECT.error_for(response(422, {"error": {"reason": "no such pipeline 'exprt'"}}))
    assert isinstance(error, InvalidRequestError) and "no such pipeline 'exprt'" in str(error)
    missing = DIALECT.error_for(response(404, b"nope", "text/plain"), job_id="r-9")
    assert isinstance(missing, JobNotFoundError) and "nope" in str(missing)
    ray = DeclarativeDialect.from_options(doc_spec("ray"))
    follow = ray.reattach(
        response(500, b"Traceback ...\nValueError: Job with submission_id k already exists.", "text/plain"), "k/1"
    )
    assert isinstance(follow, FollowUp) and follow.request.path == "/api/jobs/k%2F1"
    assert ray.reattach(response(500, b"Server got itself in trouble", "text/plain"), "k") is None
    assert DIALECT.reattach(response(409, b"already exists"), "k") is None  # no duplicate rule in this spec


def test_offsets_emulated_over_a_whole_log() -> None:
    text = "héllo\nwörld\n"
    assert slice_log(text, 0, complete=False) == type(slice_log(text, 0, complete=False))(text, 0, 14, False)
    assert slice_log(text, 7, complete=True).data == "wörld\n"
    inside = slice_log(text, 2, complete=False)  # byte 2 is inside "é": start at the next character
    assert (inside.offset, inside.data) == (3, "llo\nwörld\n")
    assert slice_log(text, 99, complete=True).data == ""


def test_listing_filters_applied_locally() -> None:
    job = Job(
        id="j", status=JobStatus.SUCCEEDED, raw_status="ok", type="export", created_at=pendulum.datetime(2026, 1, 2, tz="UTC")
    )
    assert ListQuery(("succeeded",), "export", "2026-01-01T00:00:00Z").matches(job)
    assert not ListQuery(("FAILED",)).matches(job) and not ListQuery(job_type="import").matches(job)
    assert not ListQuery(created_after="2026-01-03T00:00:00Z").matches(job)
    assert not ListQuery(("RUNNING",)).matches(Job(id="u", status=None, raw_status="paused"))
    with pytest.raises(InvalidRequestError, match="created_after must be an ISO 8601 date-time, got 'yesterday'"):
        ListQuery(created_after="yesterday")


@pytest.mark.parametrize("expression", ["id", "state.type", "a.b.c", '"quoted-name".x', "a.b"])
def test_field_paths_skip_the_interpreter_and_answer_as_jmespath_does(expression: str) -> None:
    import jmespath

    from jobservice_provider.core.dialects.declarative import FieldPath, _compile_jmespath

    compiled = _compile_jmespath(expression, "record.x")
    assert isinstance(compiled, FieldPath)
    for data in [
        {"id": "j", "state": {"type": "RUNNING"}, "a": {"b": {"c": 3}}, "quoted-name": {"x": [1]}},
        {"a": {"b": [1, 2]}, "state": "RUNNING", "id": None},
        {"a": "text", "state": [{"type": "x"}]},
        {},
        [],
        "a string",
        None,
    ]:
        assert compiled.search(data) == jmespath.search(expression, data), (expression, data)


@pytest.mark.parametrize("expression", ["[0].data", "state == 'done'", "a || b", "items[*].id", "@", "length(a)"])
def test_other_expressions_keep_the_interpreter(expression: str) -> None:
    from jobservice_provider.core.dialects.declarative import FieldPath, _compile_jmespath

    assert not isinstance(_compile_jmespath(expression, "record.x"), FieldPath)


def test_times_read_fast_mean_the_same_as_before() -> None:
    spec = {**INHOUSE, "record": {"id": "run_id", "status": "state", "created_at": "at"}}
    dialect = DeclarativeDialect.from_options(spec)
    for value, expected in [
        ("2026-01-01T10:00:00Z", pendulum.datetime(2026, 1, 1, 10, tz="UTC")),
        ("2026-01-01T10:00:00.250+02:00", pendulum.datetime(2026, 1, 1, 8, 0, 0, 250_000, tz="UTC")),
        ("2026-01-01T10:00:00", pendulum.datetime(2026, 1, 1, 10, tz="UTC")),  # naive: UTC
        ("2026-01-01 10:00:00+0000", pendulum.datetime(2026, 1, 1, 10, tz="UTC")),
    ]:
        job = dialect.parse_job(response(200, {"run_id": "r", "state": "busy", "at": value}))
        assert job.created_at == expected and job.created_at is not None and job.created_at.utcoffset() is not None, value
    with pytest.raises(MalformedResponseError, match=re.escape("record.created_at is not a timestamp: 'soon'")):
        dialect.parse_job(response(200, {"run_id": "r", "state": "busy", "at": "soon"}))


def test_an_unchanged_record_is_not_mapped_again() -> None:
    dialect = DeclarativeDialect.from_options(INHOUSE)
    first = dialect.job_from_record({**RUN, "elapsed_ms": 1})
    # Fields the spec does not read may change (Prefect's estimated run time does on every read).
    assert dialect.job_from_record({**RUN, "elapsed_ms": 2}) is first
    changed = dialect.job_from_record({**RUN, "done": RUN["done"] + 1})
    assert changed is not first and changed.progress is not None and changed.progress.completed == RUN["done"] + 1
    other = dialect.job_from_record({**RUN, "run_id": "r-99"})
    assert other.id == "r-99" and dialect.job_from_record({**RUN, "done": RUN["done"] + 1}) is changed
    with pytest.raises(MalformedResponseError, match=re.escape("record.id gave None")):
        dialect.job_from_record({**RUN, "run_id": None})
