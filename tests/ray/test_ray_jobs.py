"""The provider against a real Ray head: the ray dialect and the declarative Ray spec pass the same tests."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from tests.conftest import REPO
from tests.ray.conftest import RayHead, ray_conn_json
from tests.support.airflow_context import make_context
from tests.support.dag_test import run_dag_file, run_trigger

from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.errors import JobNotFoundError
from jobservice_provider.core.job import Job
from jobservice_provider.core.status import TERMINAL, JobStatus
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import CancelJobOperator, SubmitAndWaitOperator

RUNNER = REPO / "scripts" / "dagtest_runner.py"
PRINT_RESULT = "python -c \"import json; print('working'); print(json.dumps({'rows': 3}))\""
FAIL = "python -c \"import sys; print('boom: bad row 17', file=sys.stderr); sys.exit(3)\""
LONG = "python -c \"import time\nfor i in range(600): print('tick', i, flush=True); time.sleep(0.1)\""


def wait_until(hook: JobServiceHook, job_id: str, statuses: frozenset[JobStatus], timeout: float = 90) -> Job:
    deadline = time.monotonic() + timeout
    while (job := hook.get_job(job_id)).status not in statuses:
        assert time.monotonic() < deadline, f"job {job_id} still {job.raw_status} after {timeout:g}s"
        time.sleep(0.2)
    return job


def run_dag(dag_file: Path, conn: str) -> tuple[dict[str, Any], str]:
    env = os.environ.copy()
    env["AIRFLOW_CONN_JOBSERVICE_DEFAULT"] = conn
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dag_file.parent)  # dag.test() runs DAGs of the dags folder only
    return run_dag_file(dag_file, env=env, runner=RUNNER)


@pytest.mark.usefixtures("airflow_db")
def test_submit_and_wait_deferrable_dag(ray_conn: str, ray_head: RayHead) -> None:
    summary, output = run_dag(Path(__file__).parent / "dags" / "ray_submit_and_wait.py", ray_conn_json(ray_head, ray_conn))
    assert summary["state"] == "success", output[-4000:]
    assert "running trigger in line" in output  # the deferrable path really ran the trigger
    xcom = summary["xcom"]
    assert xcom["compute"]["return_value"] == {"answer": 42}
    assert xcom["report"]["return_value"] == "answer=42"
    job_id = xcom["compute"]["job_id"]
    assert job_id.startswith("airflow:ray_submit_and_wait:compute:")  # the idempotency key is the submission_id
    assert f"[job {job_id}] crunching numbers" in output  # the remote log reached the task log
    assert ray_head.api(f"/api/jobs/{job_id}")["status"] == "SUCCEEDED"
    # The "Job Service job" link: the dashboard's job page (its router reads the submission id after
    # #/jobs/), from the ray dialect and from the declarative spec's job_url (the preset and the
    # spec written out in docs/dialects.md) alike.
    links = {key: value for key, value in xcom["compute"].items() if key in ("job_url", "_link_JobServiceJobLink")}
    page = f"{ray_head.base_url}/#/jobs/{quote(job_id, safe='')}"
    assert links == {"job_url": page, "_link_JobServiceJobLink": page}, (ray_conn, links)
    with urllib.request.urlopen(ray_head.base_url + "/", timeout=10) as dashboard:  # the page's document
        assert dashboard.status == 200 and dashboard.headers.get_content_type() == "text/html"


@pytest.mark.usefixtures("airflow_db")
def test_the_example_dag_runs_unchanged_on_ray(ray_head: RayHead) -> None:
    """Only the connection differs from the e2e run against the local service: its dialect_options map the
    job type 'sleep' to a program kept with these tests (the ray dialect itself knows no local job types)."""
    conn = ray_conn_json(ray_head, "ray-local-types")
    summary, output = run_dag(REPO / "dags_examples" / "example_submit_and_wait.py", conn)
    assert summary["state"] == "success", output[-4000:]
    assert summary["xcom"]["train_model"]["return_value"] == {"model": "churn-v2", "auc": 0.91}
    assert summary["xcom"]["report"]["return_value"] == "model churn-v2 scored AUC 0.91"
    assert "step 3/3" in output


@pytest.mark.usefixtures("ray_conn")
def test_hook_calls_and_log_offsets(ray_head: RayHead) -> None:
    hook = JobServiceHook()
    job = hook.submit(SubmitRequest("shell", {"entrypoint": PRINT_RESULT, "result_from_logs": True}, meta={"owner": "tests"}))
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and job.meta.get("owner") == "tests"
    done = wait_until(hook, job.id, TERMINAL)
    assert done.status is JobStatus.SUCCEEDED and done.created_at is not None and done.finished_at is not None
    assert done.finished_at >= done.created_at
    assert hook.get_result(job.id) == {"rows": 3}

    whole = hook.get_logs(job.id)
    assert whole.offset == 0 and whole.complete and whole.next_offset == len(whole.data.encode())
    assert whole.data.splitlines()[-2:] == ["working", '{"rows": 3}']
    tail = hook.get_logs(job.id, whole.next_offset - len('{"rows": 3}\n'))
    assert tail.data == '{"rows": 3}\n' and tail.next_offset == whole.next_offset
    assert hook.get_logs(job.id, whole.next_offset).data == ""

    found = hook.get_jobs([job.id])  # no batch call in either: single lookups
    assert [j.id for j in found] == [job.id]
    assert job.id in [j.id for j in hook.list_jobs(ListQuery(status=["SUCCEEDED"]))]
    ok, message = hook.test_connection()
    assert ok and "2." in message, message


@pytest.mark.usefixtures("ray_conn")
def test_unknown_and_hostile_ids_are_not_found(ray_head: RayHead) -> None:
    hook = JobServiceHook()
    for job_id in ("raysubmit_doesnotexist", "../version", "a/b?c#d"):
        with pytest.raises(JobNotFoundError, match="does not exist"):
            hook.get_job(job_id)


@pytest.mark.usefixtures("ray_conn")
def test_failing_entrypoint_is_reported_with_rays_message(ray_head: RayHead) -> None:
    op = SubmitAndWaitOperator(task_id="t", job_type="shell", job_params={"entrypoint": FAIL}, poll_interval=0.5, deferrable=True)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "failed" and event["job"]["status"] == "FAILED"
    with pytest.raises(AirflowException) as info:
        op.execute_complete(context, event)
    message = str(info.value)
    assert "JOB_ENTRYPOINT_COMMAND_ERROR" in message and "exit code 3" in message and "boom: bad row 17" in message


@pytest.mark.usefixtures("ray_conn")
def test_cancel_maps_stopped_to_cancelled(ray_head: RayHead) -> None:
    hook = JobServiceHook()
    job = hook.submit(SubmitRequest("shell", {"entrypoint": LONG}))
    wait_until(hook, job.id, frozenset({JobStatus.RUNNING}))
    deadline = time.monotonic() + 60
    while "tick 1" not in (running := hook.get_logs(job.id)).data:  # its output is visible while it runs
        assert time.monotonic() < deadline, f"job {job.id} printed nothing in 60s: {running.data[-500:]}"
        time.sleep(0.2)
    assert not running.complete
    record = CancelJobOperator(task_id="c", job_id=job.id).execute(make_context())
    assert record["status"] == "CANCELLED"
    stopped = hook.get_job(job.id)
    assert stopped.raw_status == "STOPPED" and stopped.status is JobStatus.CANCELLED
    assert stopped.error is not None and "stopped" in stopped.error.message.lower()
    final = hook.get_logs(job.id, running.next_offset)
    assert final.complete and final.offset == running.next_offset


@pytest.mark.usefixtures("ray_conn")
def test_a_retry_reattaches_through_the_submission_id(ray_head: RayHead) -> None:
    first_try = make_context()
    op = SubmitAndWaitOperator(
        task_id="t",
        job_type="shell",
        job_params={"entrypoint": PRINT_RESULT, "result_from_logs": True},
        poll_interval=0.5,
        deferrable=True,
    )
    with pytest.raises(TaskDeferred):
        op.execute(first_try)
    job_id = first_try["ti"].xcom["job_id"]

    # The task is retried (same run, next try) while the job runs: Ray answers the repeated
    # submission_id with HTTP 500 "already exists", and the operator reattaches.
    ti = first_try["ti"]
    second_try = make_context(run_id=ti.run_id, try_number=2)
    retry = SubmitAndWaitOperator(
        task_id="t",
        job_type="shell",
        job_params={"entrypoint": PRINT_RESULT, "result_from_logs": True},
        poll_interval=0.5,
        deferrable=True,
    )
    try:
        result = retry.execute(second_try)  # the job already ended: the operator finishes at once
    except TaskDeferred as deferred:
        result = retry.execute_complete(second_try, run_trigger(deferred.trigger))
    assert second_try["ti"].xcom["job_id"] == job_id and result == {"rows": 3}
    same = [j for j in ray_head.api("/api/jobs/") if j.get("submission_id") == job_id]
    assert len(same) == 1, same
