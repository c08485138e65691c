"""Presets: specs shipped with the provider, named in a connection, with overrides merged over them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import BatchLookup, DeclarativeDialect, SubmitRequest, get_dialect
from jobservice_provider.core.errors import ConfigurationError, MalformedResponseError
from jobservice_provider.core.http import HttpResponse
from jobservice_provider.core.status import JobStatus
from jobservice_provider.presets import available, merge, preset_spec, resolve

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def docs_spec(page: Path, name: str) -> dict[str, Any]:
    match = re.search(rf"<!-- spec:{name} -->\s*```json\n(.*?)\n```", page.read_text(), re.S)
    assert match, f"{page} has no spec:{name} block"
    spec: dict[str, Any] = json.loads(match.group(1))
    return spec


def test_the_provider_ships_prefect_and_ray_each_valid_and_documented() -> None:
    assert available() == {"prefect": (1,), "ray": (1,)}
    for name, versions in available().items():
        page = DOCS / "presets" / f"{name}.md"
        assert page.is_file(), f"preset {name} has no page {page}"
        assert f'"preset": "{name}"' in page.read_text()
        for version in versions:
            dialect = get_dialect("declarative", {"preset": f"{name}@{version}"})
            assert isinstance(dialect, DeclarativeDialect) and f"{name}@{version}" in dialect.spec.name
        document = json.loads((REPO / "provider/jobservice_provider/presets" / f"{name}.v{versions[-1]}.json").read_text())
        assert document["preset"] == name and document["version"] == versions[-1] and document["description"]


def test_the_ray_preset_is_the_declarative_ray_spec_of_the_docs() -> None:
    """The Ray tier runs both, so they must stay the same spec (only the name differs)."""
    written_out = docs_spec(DOCS / "dialects.md", "ray")
    preset = preset_spec("ray")
    assert {**preset, "name": written_out["name"]} == written_out


def test_the_ray_preset_links_to_the_dashboards_job_page_as_the_ray_dialect_does() -> None:
    preset, ray = get_dialect("declarative", {"preset": "ray"}), get_dialect("ray", {})
    record = {"submission_id": "airflow:d:t:run 1", "status": "RUNNING"}
    job = preset.parse_job(HttpResponse(200, {}, json.dumps(record).encode()))
    url = preset.job_url(job, "http://head:8265")
    assert (
        url == ray.job_url(ray.job_from_json(record), "http://head:8265") == "http://head:8265/#/jobs/airflow%3Ad%3At%3Arun%201"
    )


def test_the_newest_version_by_default_a_pinned_one_on_request() -> None:
    assert preset_spec("prefect") == preset_spec("prefect@1")
    first = preset_spec("prefect")
    first["operations"].clear()  # a fresh copy each time: a caller cannot change the shipped preset
    assert preset_spec("prefect")["operations"]


def test_overrides_merge_over_the_preset_and_null_removes() -> None:
    dialect = get_dialect(
        "declarative",
        {
            "preset": "prefect",
            "status_map": {"PAUSED": "QUEUED"},
            "operations": {"get_many": None, "submit": {"headers": {"X-Team": "data-eng"}}},
            "capabilities": {"idempotent_submit": False},
        },
    )
    assert isinstance(dialect, DeclarativeDialect)
    assert dialect.spec.status_map["PAUSED"] is JobStatus.QUEUED
    assert dialect.spec.status_map["COMPLETED"] is JobStatus.SUCCEEDED  # the rest of the preset's map stays
    assert not isinstance(dialect, BatchLookup) and "get_many" not in dialect.spec.operations
    assert not dialect.supports_idempotent_submit
    request = dialect.submit(SubmitRequest("dep-1", {"x": 1}, idempotency_key="k"))
    assert request.path == "/deployments/dep-1/create_flow_run" and ("X-Team", "data-eng") in request.headers
    assert request.json == {"parameters": {"x": 1}, "idempotency_key": "k"}
    assert merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": None, "e": 3}, "d": [2]}) == {"a": {"b": 1, "e": 3}, "d": [2]}
    assert resolve({"operations": {}}) == {"operations": {}}  # no preset: the spec as written


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"preset": "nope"}, "preset: unknown preset 'nope'; the provider ships prefect (versions 1), ray (versions 1)"),
        ({"preset": "prefect@7"}, "preset: 'prefect' has no version 7; it has 1"),
        ({"preset": "Prefect 3"}, "preset: must be a preset name, optionally with @version (e.g. 'prefect@1'), got 'Prefect 3'"),
        ({"preset": None}, "preset: must be a preset name"),
        ({"preset": "prefect", "status_map": {"COMPLETED": "DONE"}}, "status_map.COMPLETED: 'DONE' is not one of"),
        ({"preset": "prefect", "operations": {"get": None}}, "operations.get: is required"),
        ({"preset": "prefect", "colour": "blue"}, "colour: unknown key"),
    ],
)
def test_a_bad_preset_or_override_is_named_when_the_connection_is_read(options: dict[str, Any], message: str) -> None:
    extra = {"dialect": "declarative", "dialect_options": options}
    with pytest.raises(ConfigurationError) as info:
        ServiceConfig.from_connection_fields(conn_id="prefect", host="http://127.0.0.1:4200/api", extra=extra)
    assert f"connection 'prefect': extra 'dialect_options' (dialect 'declarative'): {message}" in str(info.value)


def test_the_prefect_preset_reads_prefect_answers() -> None:
    """Prefect's shapes as its server sends them (tests/prefect runs the same against the real server)."""
    dialect = get_dialect("declarative", {"preset": "prefect"})
    run = {
        "id": "5e7e72da",
        "deployment_id": "33c18358",
        "state_type": "FAILED",
        "state_name": "Failed",
        "state": {"type": "FAILED", "message": "Flow run encountered an exception: ValueError: boom"},
        "idempotency_key": "k1",
        "labels": {"team": "data"},
        "created": "2026-11-24T11:40:00Z",
        "start_time": "2026-11-24T11:40:05.271574Z",
        "end_time": "2026-11-24T11:40:05.316161Z",
        "updated": "2026-11-24T11:40:05.4Z",
    }
    job = dialect.parse_job(HttpResponse(200, {}, json.dumps(run).encode()))
    assert (job.id, job.status, job.type, job.key) == ("5e7e72da", JobStatus.FAILED, "33c18358", "k1")
    assert job.error is not None and job.error.message == "Flow run encountered an exception: ValueError: boom"
    batch = dialect.get_many(["a", "b/c"])
    assert (batch.method, batch.path, batch.json) == (
        "POST",
        "/flow_runs/filter",
        {"flow_runs": {"id": {"any_": ["a", "b/c"]}}, "limit": 200},
    )
    cancel = dialect.cancel("r/1")
    assert cancel.path == "/flow_runs/r%2F1/set_state" and cancel.json["state"]["type"] == "CANCELLING"
    page = dialect.parse_page(HttpResponse(200, {}, json.dumps({"results": [run], "page": 1, "pages": 3}).encode()))
    assert page.next_cursor == "2" and [j.id for j in page.jobs] == ["5e7e72da"]
    last = dialect.parse_page(HttpResponse(200, {}, json.dumps({"results": [], "page": 3, "pages": 3}).encode()))
    assert last.next_cursor is None
    artifact = [{"key": "airflow-result", "type": "markdown", "data": '{"answer": 42}'}]
    assert dialect.parse_result(HttpResponse(200, {}, json.dumps(artifact).encode()), "5e7e72da") == {"answer": 42}


def test_a_ray_job_without_a_result_line_fails_saying_what_to_do() -> None:
    dialect = get_dialect("declarative", {"preset": "ray"})
    for logs, problem in (("working\ndone\n", "the last log line is not JSON: done"), ("", "the log is empty")):
        with pytest.raises(MalformedResponseError) as info:
            dialect.parse_result(HttpResponse(200, {}, json.dumps({"logs": logs}).encode()), "raysubmit_1")
        message = str(info.value)
        assert message.startswith(f"Job raysubmit_1: {problem}") and "end the job with print(json.dumps(result))" in message
