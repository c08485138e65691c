"""The provider against a real Prefect 3 server, through the ``prefect`` preset (docs/presets/prefect.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REPO
from tests.prefect.conftest import PrefectServer

from jobservice_provider.core.errors import JobNotFoundError
from jobservice_provider.core.job import Job
from jobservice_provider.core.status import TERMINAL, JobStatus
from jobservice_provider.hooks.jobservice import JobServiceHook

DAGS = Path(__file__).parent / "dags" / "prefect_dags.py"
RUNNER = REPO / "tests" / "e2e" / "run_dag.py"
RESULT = {"answer": 42, "rows": [1, 2, 3], "note": 'ünïcode & "quotes"'}


def run_dag(dag_id: str, conf: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of ``dag_id`` in its own process (the connection and Variables come from the environment)."""
    env = os.environ.copy()
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS.parent)  # dag.test() runs DAGs of the dags folder only
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(DAGS), dag_id, json.dumps(conf or {})],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAGTEST-RESULT ")]
    assert lines, output[-4000:]
    return json.loads(lines[-1].removeprefix("DAGTEST-RESULT ")), output


def wait_until(hook: JobServiceHook, job_id: str, statuses: frozenset[JobStatus], timeout: float = 90) -> Job:
    deadline = time.monotonic() + timeout
    while (job := hook.get_job(job_id)).status not in statuses:
        assert time.monotonic() < deadline, f"flow run {job_id} still {job.raw_status} after {timeout:g}s"
        time.sleep(0.2)
    return job


@pytest.mark.usefixtures("airflow_db")
def test_submit_and_wait_returns_the_flows_result_artifact(prefect_conn: PrefectServer) -> None:
    summary, output = run_dag("prefect_submit_and_wait")
    assert summary["state"] == "success", output[-4000:]
    assert "running trigger in line" in output  # the deferrable path really ran the trigger
    compute = summary["tasks"]["compute"]
    assert compute["xcom"]["return_value"] == RESULT
    assert summary["tasks"]["report"]["xcom"]["return_value"] == "answer=42"
    run_id = compute["xcom"]["job_id"]
    run = prefect_conn.api("GET", f"/flow_runs/{run_id}")
    assert run["state_type"] == "COMPLETED" and run["deployment_id"] == prefect_conn.deployments["echo"]
    assert run["idempotency_key"].startswith("airflow:prefect_submit_and_wait:compute:")
    assert run["parameters"] == {"result": RESULT}


def test_hook_calls_against_the_server(prefect_conn: PrefectServer) -> None:
    hook = JobServiceHook()
    echo = prefect_conn.deployments["echo"]
    job = hook.submit(echo, {"result": [1, "two"]}, idempotency_key="hook-calls-1", meta={"team": "data"})
    assert job.status is JobStatus.QUEUED and job.type == echo and job.key == "hook-calls-1"
    assert job.meta["team"] == "data"
    again = hook.submit(echo, {"result": "other"}, idempotency_key="hook-calls-1")  # Prefect dedupes by key
    assert again.id == job.id
    done = wait_until(hook, job.id, TERMINAL)
    assert done.status is JobStatus.SUCCEEDED and done.created_at and done.started_at and done.finished_at
    assert hook.get_result(job.id) == [1, "two"]
    assert [j.id for j in hook.get_jobs([job.id])] == [job.id]  # one flow_runs/filter request
    with pytest.raises(JobNotFoundError, match="00000000-0000-0000-0000-000000000000"):
        hook.get_jobs([job.id, "00000000-0000-0000-0000-000000000000"])
    for hostile in ("00000000-0000-0000-0000-000000000000", "../health", "a/b?c#d"):
        with pytest.raises(JobNotFoundError):
            hook.get_job(hostile)
    assert job.id in [j.id for j in hook.list_jobs(status=["SUCCEEDED"])]
    ok, message = hook.test_connection()
    assert ok and "3.9" in message, message
