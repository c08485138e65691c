"""The job's web page: where each dialect finds its URL, how it is escaped, and the extra link (issue 13, item 6)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from jobservice_provider import get_provider_info
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import DeclarativeDialect, NativeDialect, RayDialect
from jobservice_provider.core.dialects.base import web_url
from jobservice_provider.core.dialects.declarative import SpecError
from jobservice_provider.core.job import Job
from jobservice_provider.hooks.jobservice import job_url_for
from jobservice_provider.links.jobservice import JobServiceJobLink
from jobservice_provider.operators.jobservice import CancelJobOperator, SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

DIALECTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "dialects.md"
JOB_ID = "j_" + "a" * 32


def native_job(**extra: Any) -> Job:
    return Job.from_json({"id": JOB_ID, "status": "RUNNING", **extra})


@pytest.mark.parametrize(
    ("reference", "base", "expected"),
    [
        ("https://ui.example/runs/42", "http://svc", "https://ui.example/runs/42"),
        ("/ui/jobs/j_1", "http://127.0.0.1:8765", "http://127.0.0.1:8765/ui/jobs/j_1"),
        ("/ui/jobs/j_1", "https://host/prefix/", "https://host/prefix/ui/jobs/j_1"),  # appended like API paths
        ('https://ui.example/a b"<x>', "http://svc", "https://ui.example/a%20b%22%3Cx%3E"),
        ("https://ui.example/r?x=1&y=%2F#top", "http://svc", "https://ui.example/r?x=1&y=%2F#top"),
        ("https://ui.example/é", "http://svc", "https://ui.example/%C3%A9"),
    ],
)
def test_web_urls_are_absolute_http_and_escaped(reference: str, base: str, expected: str) -> None:
    assert web_url(reference, base) == expected


@pytest.mark.parametrize(
    "reference",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",  # protocol-relative: another host, not a path under the base URL
        "ftp://files.example/x",
        "https://user:secret@ui.example/x",
        "https://ui.example/x\nSet-Cookie: a=b",
        "runs/42",
        "",
        "   ",
        None,
        42,
        {"href": "https://ui.example"},
    ],
)
def test_anything_else_is_no_link(reference: Any) -> None:
    assert web_url(reference, "http://svc") is None


def test_native_record_links_are_read_leniently() -> None:
    assert native_job(links={"web": "/ui/jobs/x", "self": "/v1/jobs/x"}).links == {"web": "/ui/jobs/x", "self": "/v1/jobs/x"}
    assert native_job().links == {}
    # Links only decorate a record: odd ones are dropped, the record still parses.
    assert native_job(links=["https://x"]).links == {}
    assert native_job(links={"web": {"href": "https://x"}, "log": "", "api": "/v1"}).links == {"api": "/v1"}


def test_native_job_url_is_the_records_web_link() -> None:
    dialect = NativeDialect()
    assert dialect.job_url(native_job(links={"web": f"/ui/jobs/{JOB_ID}"}), "http://svc:1") == f"http://svc:1/ui/jobs/{JOB_ID}"
    assert dialect.job_url(native_job(links={"web": "https://ui.example/j"}), "http://svc") == "https://ui.example/j"
    assert dialect.job_url(native_job(links={"web": "javascript:alert(1)"}), "http://svc") is None
    assert dialect.job_url(native_job(), "http://svc") is None  # a service without pages: no link


def test_ray_job_url_is_the_dashboards_job_page() -> None:
    dialect = RayDialect()
    job = dialect.job_from_json({"submission_id": "airflow:d:t:run 1", "status": "RUNNING"})
    assert dialect.job_url(job, "http://head:8265") == "http://head:8265/#/jobs/airflow%3Ad%3At%3Arun%201"
    assert (
        dialect.job_url(job, "https://ray.example/dashboard") == "https://ray.example/dashboard/#/jobs/airflow%3Ad%3At%3Arun%201"
    )


def inhouse(**extra: Any) -> dict[str, Any]:
    """A minimal declarative spec (the in-house example of docs/dialects.md needs more than this test)."""
    return {
        "operations": {"submit": {"path": "/runs", "id": "run_id"}, "get": {"path": "/runs/{job_id}"}},
        "record": {"id": "run_id", "status": "state"},
        "status_map": {"done": "SUCCEEDED", "busy": "RUNNING"},
        **extra,
    }


def test_declarative_job_url_template_fills_in_the_escaped_job_id() -> None:
    dialect = DeclarativeDialect.from_options(inhouse(job_url="https://ui.example/runs/{job_id}?tab=log"))
    job = dialect.job_from_record({"run_id": "r 1/2", "state": "busy"})
    assert dialect.job_url(job, "http://api.example") == "https://ui.example/runs/r%201%2F2?tab=log"
    relative = DeclarativeDialect.from_options(inhouse(job_url="/runs/{job_id}/view"))
    assert relative.job_url(job, "http://api.example/v2") == "http://api.example/v2/runs/r%201%2F2/view"
    assert DeclarativeDialect.from_options(inhouse()).job_url(job, "http://api.example") is None


@pytest.mark.parametrize(
    ("job_url", "message"),
    [
        ("javascript:alert('{job_id}')", "job_url: must be an http(s) URL or a path under the base URL"),
        ("//ui.example/{job_id}", "job_url: must be an http(s) URL"),
        ("https://ui.example/runs", "job_url: must use {job_id}"),
        ("https://ui.example/{run}", "job_url: unknown placeholder {run}"),
        ("https://ui.example/{job_id", "job_url: stray brace"),
        (["https://ui.example/{job_id}"], "job_url: must be a string template"),
    ],
)
def test_a_bad_job_url_template_names_the_field(job_url: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}")):
        DeclarativeDialect.from_options(inhouse(job_url=job_url))


def test_the_documented_job_url_example_is_valid() -> None:
    text = DIALECTS_DOC.read_text(encoding="utf-8")
    assert '"job_url": "https://ui.example/runs/{job_id}"' in text
    DeclarativeDialect.from_options(inhouse(job_url="https://ui.example/runs/{job_id}"))


def test_the_hook_builds_the_url_with_the_connections_dialect_and_base_url() -> None:
    native = ServiceConfig(base_url="http://127.0.0.1:8765")
    assert job_url_for(native, native_job(links={"web": "/ui/jobs/x"})) == "http://127.0.0.1:8765/ui/jobs/x"
    declarative = ServiceConfig(
        base_url="http://api", dialect="declarative", dialect_options=json.dumps(inhouse(job_url="/r/{job_id}"), sort_keys=True)
    )
    assert job_url_for(declarative, Job(id="r7", status=None, raw_status="busy")) == "http://api/r/r7"


def test_the_extra_link_is_declared_and_attached_to_the_operator_and_the_sensor() -> None:
    (path,) = get_provider_info()["extra-links"]
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name) is JobServiceJobLink
    for task_class in (SubmitAndWaitOperator, JobCompleteSensor):
        assert [link.name for link in task_class.operator_extra_links] == ["Job Service job"]
    operator = SubmitAndWaitOperator(task_id="t", job_type="sleep")
    link = JobServiceJobLink()
    assert link.get_link(operator, ti_key=None) == ""  # unknown: no link (Airflow shows none)
    operator.job_url = "http://svc/ui/jobs/j_1"
    assert link.get_link(operator, ti_key=None) == "http://svc/ui/jobs/j_1"


def test_jobservice_conn_id_is_a_template_field() -> None:
    for task_class in (SubmitAndWaitOperator, JobCompleteSensor, CancelJobOperator):
        assert "jobservice_conn_id" in task_class.template_fields, task_class
