"""The local job service's auth schemes for tests (issue 14, part 7): the provider's connection auth, end to end."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import conn_json
from tests.support import local_service as support
from tests.support.local_service import LocalService, api_for, assert_problem

from jobservice_provider.core.dialects import SubmitRequest
from jobservice_provider.core.errors import AuthenticationError
from jobservice_provider.core.status import JobStatus
from jobservice_provider.hooks.jobservice import JobServiceHook

pytestmark = pytest.mark.integration

SECRET = "correct-horse-battery-staple"


@pytest.fixture(scope="module", params=["basic", "header"])
def scheme_svc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    options = ["--basic-user", "airflow"] if request.param == "basic" else ["--auth-header", "X-API-Key"]
    service = LocalService(
        tmp_path_factory.mktemp(f"auth-{request.param}"), token=SECRET, extra_args=["--auth-scheme", request.param, *options]
    )
    with service:
        yield service


def scheme_of(service: LocalService) -> str:
    return service.extra_args[service.extra_args.index("--auth-scheme") + 1]


def connection(service: LocalService, password: str = SECRET) -> str:
    """An AIRFLOW_CONN_* value for the service's scheme, set as a user of the provider sets it."""
    if scheme_of(service) == "basic":
        conn = json.loads(conn_json(service.base_url, password, auth_type="basic", poll_interval=0.2))
        return json.dumps({**conn, "login": "airflow"})
    return conn_json(service.base_url, password, auth_type="header", auth_header="X-API-Key", poll_interval=0.2)


def test_the_provider_runs_a_job_through_each_scheme(scheme_svc: LocalService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SCHEMED", connection(scheme_svc))
    hook = JobServiceHook(jobservice_conn_id="schemed")
    ok, message = hook.test_connection()
    assert ok and "jobservice-local" in message, message
    job = hook.submit(SubmitRequest("sleep", {"seconds": 0.2, "result": {"via": scheme_of(scheme_svc)}}))
    deadline = time.monotonic() + 30
    while (seen := hook.get_job(job.id)).status is not JobStatus.SUCCEEDED:
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert hook.get_result(job.id) == {"via": scheme_of(scheme_svc)}
    assert [j.id for j in hook.get_jobs([job.id])] == [job.id]


def test_a_wrong_secret_is_refused_naming_the_scheme(scheme_svc: LocalService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SCHEMED", connection(scheme_svc, password="wrong-secret"))
    with pytest.raises(AuthenticationError):
        JobServiceHook(jobservice_conn_id="schemed").get_jobs(["j_x"])


async def test_the_service_refuses_other_schemes(scheme_svc: LocalService) -> None:
    basic = "Basic " + base64.b64encode(f"airflow:{SECRET}".encode()).decode()
    async with api_for(scheme_svc) as api:
        own = scheme_svc.headers
        assert (await api.call("GET", "/v1/health", auth=False, headers=own))[0] == 200
        for headers in (
            {},
            {"Authorization": f"Bearer {SECRET}"},
            {"X-API-Key": SECRET} if scheme_of(scheme_svc) == "basic" else {"Authorization": basic},
            {"Authorization": "Basic " + base64.b64encode(f"other:{SECRET}".encode()).decode()},
            {"Authorization": "Basic not-base64!"},
            {"X-API-Key": "wrong"},
        ):
            status, problem, response_headers = await api.call("GET", "/v1/health", auth=False, headers=headers)
            assert_problem(status, problem, response_headers, 401, "unauthorized")
            expected = "Basic" if scheme_of(scheme_svc) == "basic" else "ApiKey"
            assert response_headers["WWW-Authenticate"].startswith(expected), response_headers


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--auth-scheme", "basic"], "--auth-scheme basic needs --basic-user"),
        (["--basic-user", "a"], "--basic-user is only used with --auth-scheme basic"),
        (["--auth-header", "X-Key"], "--auth-header is only used with --auth-scheme header"),
        (["--auth-scheme", "header", "--auth-header", "Bad Header"], "--auth-header must be a header name"),
        (["--auth-scheme", "basic", "--basic-user", "a:b"], "--basic-user must not contain"),
        (["--auth-scheme", "header", "--no-auth"], "--no-auth"),
    ],
)
def test_scheme_options_are_checked(tmp_path: Path, args: list[str], says: str) -> None:
    done = subprocess.run(
        support.serve_command("--port", "0", "--db", tmp_path / "x.db", *args), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and says in done.stderr, done.stderr
