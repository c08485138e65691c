"""docs/openapi.yaml and the local service's aiohttp app describe the same API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobservice_local.app import (
    MAX_BATCH_IDS,
    MAX_FIELD_BYTES,
    MAX_LINE_BYTES,
    MAX_WAIT_S,
    MAX_WATCH_IDS,
    QUERY_PARAMS,
    SUBMIT_FIELDS,
    WATCH_FIELDS,
    build_app,
)
from jobservice_local.models import (
    JOB_PAGE_PATH,
    MAX_JSON_DEPTH,
    MAX_JSON_INT,
    MIN_JSON_INT,
    RECORD_FIELDS,
    StoredJob,
    empty_progress,
)
from jobservice_local.problems import PROBLEM_CONTENT_TYPE, TITLES, problem_body
from jobservice_local.service import LocalConfig, LocalJobService
from jobservice_local.status import JobStatus

yaml = pytest.importorskip("yaml")

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
#: the JSON members each route reads from its body; routes not listed take no body.
BODY_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/v1/jobs"): SUBMIT_FIELDS,
    ("POST", "/v1/watch"): WATCH_FIELDS,
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _routes(tmp_path: Path) -> set[tuple[str, str]]:
    # Building the app opens nothing: the database is opened on startup.
    app = build_app(LocalJobService(LocalConfig(db_path=tmp_path / "never-opened.db")))
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    assert not (tmp_path / "never-opened.db").exists()
    return routes


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_document_is_openapi_3_1_with_bearer_auth(doc: dict[str, Any]) -> None:
    assert str(doc["openapi"]).startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["security"] == [{"bearerAuth": []}]


def test_every_route_is_documented_and_every_documented_route_exists(doc: dict[str, Any], tmp_path: Path) -> None:
    served = _routes(tmp_path)
    documented = set(_operations(doc))
    assert served - documented == set(), "routes served but not documented"
    assert documented - served == set(), "routes documented but not served"


def test_query_parameters_match(doc: dict[str, Any]) -> None:
    for (method, path), operation in _operations(doc).items():
        parameters = [_resolve(doc, p) for p in [*doc["paths"][path].get("parameters", []), *operation.get("parameters", [])]]
        documented = {p["name"] for p in parameters if p["in"] == "query"}
        assert documented == set(QUERY_PARAMS.get((method, path), ())), f"{method} {path}"
        for parameter in parameters:
            if parameter["in"] == "path":
                assert parameter["required"] is True
                assert "{" + parameter["name"] + "}" in path


def test_request_bodies_match(doc: dict[str, Any]) -> None:
    for key, operation in _operations(doc).items():
        if key not in BODY_FIELDS:
            assert "requestBody" not in operation, f"{key} documents a body the service does not read"
            continue
        body = operation["requestBody"]
        assert body["required"] is True and list(body["content"]) == ["application/json"], key
        schema = _resolve(doc, body["content"]["application/json"]["schema"])
        assert list(schema["properties"]) == list(BODY_FIELDS[key]), key
        assert schema["additionalProperties"] is False, f"{key}: the service rejects unknown members"


def test_documented_limits_match_the_service(doc: dict[str, Any]) -> None:
    description = " ".join(doc["info"]["description"].split())
    assert f"a request line over {MAX_LINE_BYTES} bytes (414" in description
    assert f"a header over {MAX_FIELD_BYTES} bytes" in description
    assert f"nest at most {MAX_JSON_DEPTH} levels deep" in description
    assert f"({MIN_JSON_INT} to {MAX_JSON_INT})" in description
    watch = doc["components"]["schemas"]["WatchRequest"]["properties"]
    assert watch["seen"]["maxProperties"] == MAX_WATCH_IDS
    assert watch["wait_s"]["maximum"] == MAX_WAIT_S
    lookup = {p["name"]: p for p in _operations(doc)[("GET", "/v1/jobs")]["parameters"]}
    assert lookup["id"]["schema"]["maxItems"] == MAX_BATCH_IDS
    long_poll = {p["name"]: p for p in _operations(doc)[("GET", "/v1/jobs/{id}")]["parameters"]}
    assert long_poll["wait_s"]["schema"]["maximum"] == MAX_WAIT_S


def test_every_operation_documents_auth_and_problem_errors(doc: dict[str, Any]) -> None:
    for (method, path), operation in _operations(doc).items():
        responses = operation["responses"]
        if operation.get("security") == []:  # a page for browsers: only the Host rule, HTML
            assert (method, path) == ("GET", JOB_PAGE_PATH) and set(responses) == {"200", "421"}, f"{method} {path}"
            assert list(responses["200"]["content"]) == ["text/html"]
            continue
        assert "401" in responses, f"{method} {path} does not document 401"
        # The browser rules (jobservice_local.guard) apply to every call; the media type to every body.
        assert {"403", "421"} <= set(responses), f"{method} {path} does not document the browser rules"
        assert ("415" in responses) == ((method, path) in BODY_FIELDS), f"{method} {path}: 415 where a body is read"
        for code, response in responses.items():
            content = _resolve(doc, response).get("content", {})
            if int(code) >= 400:
                assert list(content) == [PROBLEM_CONTENT_TYPE], f"{method} {path} {code}"
                assert content[PROBLEM_CONTENT_TYPE]["schema"] == {"$ref": "#/components/schemas/Problem"}
            else:
                assert list(content) == ["application/json"], f"{method} {path} {code}"


def test_job_schema_matches_the_record(doc: dict[str, Any]) -> None:
    schema = doc["components"]["schemas"]["Job"]
    assert list(schema["properties"]) == list(RECORD_FIELDS)
    assert schema["required"] == list(RECORD_FIELDS)
    assert doc["components"]["schemas"]["JobStatus"]["enum"] == [status.value for status in JobStatus]


def test_every_problem_type_is_listed(doc: dict[str, Any]) -> None:
    listed = set(doc["components"]["schemas"]["Problem"]["properties"]["type"]["examples"])
    assert listed == {f"urn:jobservice:problem:{slug}" for slug in TITLES}


def test_records_and_problems_validate_against_the_schemas(doc: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    job = StoredJob(
        id="j_" + "a" * 32,
        key="k",
        type="sleep",
        params={"seconds": 1},
        meta={},
        timeout_s=None,
        fingerprint="f",
        status=JobStatus.FAILED,
        version=3,
        progress=empty_progress(),
        attempt=1,
        created_at="2026-11-28T11:00:00.123456Z",
        started_at="2026-11-28T11:00:00.223456Z",
        updated_at="2026-11-28T11:00:01.123456Z",
        finished_at="2026-11-28T11:00:01.123456Z",
        error={"type": "Timeout", "message": "job exceeded timeout_s=1"},
        params_json='{"seconds":1}',
        meta_json="{}",
    )

    def validate(instance: Any, name: str) -> None:
        root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        jsonschema.Draft202012Validator(root).validate(instance)

    validate(job.record(), "Job")
    validate({"jobs": [job.record()], "next_cursor": None}, "JobPage")
    validate({"jobs": [job.record()], "missing": ["j_" + "b" * 32]}, "WatchResult")
    validate({"seen": {job.id: 2}, "wait_s": 20}, "WatchRequest")
    bad_watches: list[dict[str, Any]] = [
        {"seen": {}},
        {"seen": {job.id: True}},
        {"seen": {"": 1}},
        {"seen": {job.id: 1}, "wait_s": 61},
    ]
    for bad_watch in bad_watches:
        with pytest.raises(jsonschema.ValidationError):
            validate(bad_watch, "WatchRequest")
    validate(problem_body(409, "job-not-succeeded", "no", job_id=job.id, job_status="FAILED"), "Problem")
    with pytest.raises(jsonschema.ValidationError):
        validate({**job.record(), "status": "DONE"}, "Job")
