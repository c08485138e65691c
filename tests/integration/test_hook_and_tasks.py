"""The hook, trigger, sensor and operators against the real local job service on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from tests.conftest import conn_json
from tests.support.airflow_context import make_context
from tests.support.dag_test import run_trigger

from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.errors import JobNotFoundError
from jobservice_provider.core.policy import PollPolicy
from jobservice_provider.core.status import JobStatus
from jobservice_provider.core.wait import WaitSpec
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import CancelJobOperator, SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("jobservice_conn")]


def test_sync_face_covers_every_call() -> None:
    hook = JobServiceHook()
    key = f"k-{uuid.uuid4()}"
    job = hook.submit(
        SubmitRequest("sleep", {"seconds": 0.3, "steps": 2, "result": {"n": 1}}, idempotency_key=key, meta={"who": "test"})
    )
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and job.meta == {"who": "test"}
    assert (
        hook.submit(
            SubmitRequest("sleep", {"seconds": 0.3, "steps": 2, "result": {"n": 1}}, idempotency_key=key, meta={"who": "test"})
        ).id
        == job.id
    )
    other = hook.submit(SubmitRequest("sleep", {"seconds": 30}))
    assert [j.id for j in hook.get_jobs([job.id, other.id])] == [job.id, other.id]
    assert hook.cancel_job(other.id).status is JobStatus.CANCELLED
    waited = hook.wait_for_job(WaitSpec(job_id=job.id, poll=PollPolicy(interval=0.2)), check_now=True)
    assert waited.outcome.value == "success" and waited.job is not None and waited.job.status is JobStatus.SUCCEEDED
    assert hook.get_result(job.id) == {"n": 1}
    logs = hook.get_logs(job.id)
    assert logs.complete and "2/2" in logs.data
    listed = list(hook.list_jobs(ListQuery(status=["CANCELLED"], job_type="sleep")))
    assert other.id in [j.id for j in listed] and job.id not in [j.id for j in listed]
    ok, message = hook.test_connection()
    assert ok and "jobservice-local" in message


def test_unknown_and_hostile_job_ids_are_escaped_and_reported() -> None:
    hook = JobServiceHook()
    for job_id in ("j_doesnotexist", "../health", "a/b?c=d#e"):
        with pytest.raises(JobNotFoundError, match="not found"):
            hook.get_job(job_id)
    with pytest.raises(JobNotFoundError, match="j_nope"):
        hook.get_jobs(["j_nope"])


def test_wrong_token_fails_clearly(monkeypatch: pytest.MonkeyPatch, jobservice_conn: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BAD_TOKEN", conn_json(jobservice_conn.base_url, "wrong"))
    ok, message = JobServiceHook("bad_token").test_connection()
    assert not ok and "401" in message


def test_async_face_in_an_event_loop() -> None:
    async def main() -> tuple[JobStatus | None, Any]:
        hook = JobServiceHook()
        job = await hook.asubmit(SubmitRequest("sleep", {"seconds": 0.2, "result": "async"}))
        while (job := await hook.aget_job(job.id)).status is not JobStatus.SUCCEEDED:
            await asyncio.sleep(0.1)
        return job.status, await hook.aget_result(job.id)

    assert asyncio.run(main()) == (JobStatus.SUCCEEDED, "async")


def test_operator_defers_then_returns_the_result() -> None:
    op = SubmitAndWaitOperator(
        task_id="t",
        job_type="sleep",
        job_params={"seconds": 1, "steps": 2, "result": {"auc": 0.9}},
        poll_interval=0.3,
        deferrable=True,
    )
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    job_id = context["ti"].xcom["job_id"]
    assert deferred.value.method_name == "execute_complete"
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "success" and event["job_id"] == job_id and event["job"]["status"] == "SUCCEEDED"
    assert op.execute_complete(context, event) == {"auc": 0.9}


def test_operator_without_deferral_gives_the_same_result() -> None:
    op = SubmitAndWaitOperator(
        task_id="t",
        job_type="sleep",
        job_params={"seconds": 1, "steps": 2, "result": {"auc": 0.9}},
        poll_interval=0.3,
        deferrable=False,
    )
    context = make_context()
    assert op.execute(context) == {"auc": 0.9}
    assert JobServiceHook().get_job(context["ti"].xcom["job_id"]).status is JobStatus.SUCCEEDED


def test_operator_fails_with_the_remote_error() -> None:
    op = SubmitAndWaitOperator(
        task_id="t", job_type="sleep", job_params={"seconds": 0.2, "fail": "out of memory"}, poll_interval=0.3, deferrable=False
    )
    with pytest.raises(Exception, match="out of memory") as info:
        op.execute(make_context())
    assert "FAILED" in str(info.value)


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_sensor_returns_the_job_record(deferrable: bool) -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", {"seconds": 1, "steps": 2}))
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, poll_interval=0.3, timeout=60, deferrable=deferrable)
    context = make_context()
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(context)
        assert 0 < deferred.value.timeout.total_seconds() <= 60
        record = sensor.execute_complete(context, run_trigger(deferred.value.trigger))
    else:
        record = sensor.execute(context)
    assert record["id"] == job.id and record["status"] == "SUCCEEDED"


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_sensor_fails_on_a_failed_job_naming_id_status_and_error(deferrable: bool) -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", {"seconds": 0.5, "fail": "bad input row 17"}))
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, poll_interval=0.3, timeout=60, deferrable=deferrable)
    context = make_context()
    with pytest.raises(AirflowFailException) as info:
        if deferrable:
            try:
                sensor.execute(context)
            except TaskDeferred as deferred:
                sensor.execute_complete(context, run_trigger(deferred.trigger))
        else:
            sensor.execute(context)
    message = str(info.value)
    assert job.id in message and "FAILED" in message and "bad input row 17" in message


def test_cancel_job_operator() -> None:
    hook = JobServiceHook()
    running = hook.submit(SubmitRequest("sleep", {"seconds": 60}))
    assert CancelJobOperator(task_id="c", job_id=running.id).execute(make_context())["status"] == "CANCELLED"
    done = hook.submit(SubmitRequest("sleep", {"seconds": 0}))
    while hook.get_job(done.id).status is not JobStatus.SUCCEEDED:
        pass
    assert CancelJobOperator(task_id="c", job_id=done.id).execute(make_context())["status"] == "SUCCEEDED"
