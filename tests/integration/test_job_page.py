"""The job's page, end to end: the local service's record links to it, the hook resolves the link,
and a browser (no token, from another site's page) can open it; the API stays closed (issue 13, item 6)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from tests.conftest import conn_json

from jobservice_provider.core.dialects import SubmitRequest
from jobservice_provider.hooks.jobservice import JobServiceHook

pytestmark = pytest.mark.integration

# What a click in Airflow's UI (another port of 127.0.0.1) makes a browser send.
FROM_AIRFLOW_PAGE = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Referer": "http://127.0.0.1:28080/dags"}


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@pytest.fixture
def hook(local_service: Any, monkeypatch: pytest.MonkeyPatch) -> JobServiceHook:
    monkeypatch.setenv("AIRFLOW_CONN_JOBSERVICE_DEFAULT", conn_json(local_service.base_url, local_service.token))
    return JobServiceHook()


def test_a_jobs_link_resolves_to_a_page_a_browser_can_open(local_service: Any, hook: JobServiceHook) -> None:
    job = hook.submit(SubmitRequest("sleep", {"seconds": 0}))
    assert job.links == {"web": f"/ui/jobs/{job.id}"}
    url = hook.job_url(job)
    assert url == f"{local_service.base_url}/ui/jobs/{job.id}"
    assert hook.job_url(hook.get_job(job.id)) == url  # every record carries it, not only the submit's

    status, headers, body = fetch(url, FROM_AIRFLOW_PAGE)  # no token, as a browser has none
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == "default-src 'none'"
    assert f"<h1>Job {job.id}</h1>" in body
    assert "SUCCEEDED" not in body and "QUEUED" not in body  # it shows nothing about the job


def test_the_page_escapes_what_it_echoes_and_reads_no_data(local_service: Any) -> None:
    status, _, body = fetch(f"{local_service.base_url}/ui/jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert status == 200
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_the_api_stays_closed_to_browsers_and_the_page_to_other_host_names(local_service: Any, hook: JobServiceHook) -> None:
    job = hook.submit(SubmitRequest("sleep", {"seconds": 0}))
    # The same browser request to the API: refused, with or without a token.
    status, _, body = fetch(f"{local_service.base_url}/v1/jobs/{job.id}", FROM_AIRFLOW_PAGE)
    assert status == 403 and "cross-origin-request" in body, body
    status, _, body = fetch(f"{local_service.base_url}/v1/jobs/{job.id}", {**FROM_AIRFLOW_PAGE, **local_service.headers})
    assert status == 403 and "cross-origin-request" in body, body
    status, _, body = fetch(f"{local_service.base_url}/v1/jobs/{job.id}")  # and without the token
    assert status == 401, body
    # The page under another host name (DNS rebinding): refused like every request.
    status, _, body = fetch(f"{local_service.base_url}/ui/jobs/{job.id}", {"Host": "attacker.rebind.example"})
    assert status == 421 and "host-not-allowed" in body, body
