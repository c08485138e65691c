"""The provider against a real Prefect 3 server, through the ``prefect`` preset (docs/presets/prefect.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from tests.conftest import REPO
from tests.prefect.conftest import PrefectServer
from tests.support.airflow_context import make_context
from tests.support.dag_test import RUNNER, dag_test_summary, run_trigger

from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.errors import JobNotFoundError, JobServiceError
from jobservice_provider.core.job import Job
from jobservice_provider.core.status import TERMINAL, JobStatus
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import SubmitAndWaitOperator

DAGS = Path(__file__).parent / "dags" / "prefect_dags.py"
RESULT = {"answer": 42, "rows": [1, 2, 3], "note": 'ünïcode & "quotes"'}


def run_dag(
    dag_id: str, conf: dict[str, Any] | None = None, *, when: str = "", then: Callable[[], object] | None = None
) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of ``dag_id`` in its own process (the connection and Variables come from the environment).

    ``then`` is called once a line of its output contains ``when``.
    """
    env = os.environ.copy()
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS.parent)  # dag.test() runs DAGs of the dags folder only
    process = subprocess.Popen(
        [sys.executable, str(RUNNER), str(DAGS), dag_id, json.dumps(conf or {})],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
    )
    timer = threading.Timer(300, process.kill)
    timer.start()
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if then is not None and when in line:
                then()
                then = None
        process.wait()
    finally:
        timer.cancel()
    output = "".join(lines)
    summary = dag_test_summary(output, output)
    assert then is None, f"{when!r} never appeared in the output:\n{output[-4000:]}"
    return summary, output


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
    assert f"[job {run_id}] echo: working on" in output  # the flow's log reached the task log


def test_hook_calls_against_the_server(prefect_conn: PrefectServer) -> None:
    hook = JobServiceHook()
    echo = prefect_conn.deployments["echo"]
    job = hook.submit(SubmitRequest(echo, {"result": [1, "two"]}, idempotency_key="hook-calls-1", meta={"team": "data"}))
    assert job.status is JobStatus.QUEUED and job.type == echo and job.key == "hook-calls-1"
    assert job.meta["team"] == "data"
    again = hook.submit(SubmitRequest(echo, {"result": "other"}, idempotency_key="hook-calls-1"))  # Prefect dedupes by key
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
    assert job.id in [j.id for j in hook.list_jobs(ListQuery(status=["SUCCEEDED"]))]
    ok, message = hook.test_connection()
    assert ok and "3.9" in message, message


def create_flow_run(server: PrefectServer, deployment: str, parameters: dict[str, Any]) -> str:
    """A flow run created in Prefect directly, as another system would (not through the provider)."""
    run = server.api("POST", f"/deployments/{server.deployments[deployment]}/create_flow_run", {"parameters": parameters})
    run_id: str = run["id"]
    return run_id


@pytest.mark.usefixtures("airflow_db")
def test_sensor_waits_for_an_existing_flow_run(prefect_conn: PrefectServer, tmp_path: Path) -> None:
    # The flow runs until the test opens its gate, which it does once the sensor waits in the trigger.
    gate = tmp_path / "gate-open"
    run_id = create_flow_run(prefect_conn, "gate", {"flag": str(gate)})
    summary, output = run_dag("prefect_sensor", {"flow_run_id": run_id}, when="running trigger in line", then=gate.touch)
    assert summary["tasks"]["wait_for_run"]["state"] == "success", output[-4000:]
    assert "gate open" in " ".join(r["message"] for r in prefect_conn.logs(run_id))
    assert prefect_conn.api("GET", f"/flow_runs/{run_id}")["state_type"] == "COMPLETED"
    # It waited for the run: the sensor's task ended after the flow run did.
    finished = prefect_conn.api("GET", f"/flow_runs/{run_id}")["end_time"]
    assert summary["tasks"]["wait_for_run"]["end_date"] > finished.replace("Z", "+00:00")


@pytest.mark.usefixtures("airflow_db")
def test_a_failing_flow_fails_the_task_with_prefects_message(prefect_conn: PrefectServer) -> None:
    summary, output = run_dag("prefect_failing")
    assert summary["state"] == "failed" and summary["tasks"]["fails"]["state"] == "failed", output[-4000:]
    run_id = summary["tasks"]["fails"]["xcom"]["job_id"]
    run = prefect_conn.api("GET", f"/flow_runs/{run_id}")
    assert run["state_type"] == "FAILED" and "ValueError: bad row 17" in run["state"]["message"]
    assert "Flow run encountered an exception: ValueError: bad row 17" in output


@pytest.mark.usefixtures("airflow_db")
def test_execution_timeout_cancels_the_flow_run(prefect_conn: PrefectServer) -> None:
    summary, output = run_dag("prefect_timeout")
    task = summary["tasks"]["too_long"]
    assert summary["state"] == "failed" and task["state"] == "failed", output[-4000:]
    assert "AirflowTaskTimeout" in output
    run_id = task["xcom"]["job_id"]
    run = prefect_conn.api("GET", f"/flow_runs/{run_id}")
    assert run["state_type"] == "CANCELLED", run["state"]
    assert run["start_time"] is not None  # it was running when it was cancelled, not cancelled before it started
    assert f"Cancelled job {run_id}" in output or "CANCELLED" in output


def test_a_retry_reattaches_to_the_same_flow_run(prefect_conn: PrefectServer) -> None:
    echo = prefect_conn.deployments["echo"]
    first_try = make_context()
    op = SubmitAndWaitOperator(task_id="t", job_type=echo, job_params={"result": "once"}, poll_interval=0.5, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(first_try)
    job_id = first_try["ti"].xcom["job_id"]

    # The task is retried (same run, next try) while the flow run is queued or running: Prefect answers
    # the repeated idempotency key with the flow run it created, and the operator reattaches.
    second_try = make_context(run_id=first_try["ti"].run_id, try_number=2)
    retry = SubmitAndWaitOperator(task_id="t", job_type=echo, job_params={"result": "once"}, poll_interval=0.5, deferrable=True)
    try:
        result = retry.execute(second_try)
    except TaskDeferred as deferred:
        result = retry.execute_complete(second_try, run_trigger(deferred.trigger))
    assert second_try["ti"].xcom["job_id"] == job_id and result == "once"
    runs = [run for run in prefect_conn.flow_runs("echo") if run["parameters"] == {"result": "once"}]
    assert [run["id"] for run in runs] == [job_id], runs  # one flow run in all


@pytest.mark.usefixtures("airflow_db")
def test_all_500_log_lines_reach_the_task_log_with_those_stored_after_the_run_completed(prefect_conn: PrefectServer) -> None:
    summary, output = run_dag("prefect_chatty")
    task = summary["tasks"]["chatty"]
    assert summary["state"] == "success", output[-4000:]
    run_id = task["xcom"]["job_id"]
    assert task["xcom"]["return_value"] == 500
    copied = [int(n) for n in re.findall(rf"\[job {run_id}\] line (\d+) of 500", output)]
    assert sorted(copied) == list(range(1, 501)), f"missing {sorted(set(range(1, 501)) - set(copied))[:20]}"
    assert len(copied) == 500  # each line once
    # The scenario really happened: Prefect stored some of them after the run had completed.
    run = prefect_conn.api("GET", f"/flow_runs/{run_id}")
    late = [r["message"] for r in prefect_conn.logs(run_id) if r["created"] > run["end_time"]]
    assert any(message == "line 500 of 500" for message in late), late[-5:]


def test_a_flow_without_a_result_artifact_fails_saying_what_to_do(prefect_conn: PrefectServer) -> None:
    hook = JobServiceHook()
    job = hook.submit(SubmitRequest(prefect_conn.deployments["echo"], {"result": "kept to itself", "publish": False}))
    assert wait_until(hook, job.id, TERMINAL).status is JobStatus.SUCCEEDED
    with pytest.raises(JobServiceError) as info:
        hook.get_result(job.id)
    message = str(info.value)
    assert job.id in message and "airflow-result" in message and "docs/presets/prefect.md" in message, message
