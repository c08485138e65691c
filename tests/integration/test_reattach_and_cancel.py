"""No duplicate jobs, no orphaned jobs: reattach on retry, cancel on every way a task ends."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from tests.support.airflow_context import make_context

from jobservice_provider._compat import TRIGGER_ON_KILL
from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.job import Job
from jobservice_provider.core.status import JobStatus
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import STATE_KEY, RetryStrategy, SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor
from jobservice_provider.triggers.jobservice import JobStatusTrigger

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("jobservice_conn")]


class TaskStateStore:
    """Stands in for Airflow's ``task_state_store`` accessor (same get/set), kept across tries."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = value


def jobs_since(started: str, job_type: str) -> list[Job]:
    return list(JobServiceHook().list_jobs(ListQuery(job_type=job_type, created_after=started)))


def try_context(store: TaskStateStore, run_id: str, try_number: int) -> dict[str, Any]:
    context = make_context(run_id=run_id, try_number=try_number)
    context["task_state_store"] = store
    return context


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("strategy", [RetryStrategy.REATTACH, RetryStrategy.RESUBMIT])
def test_worker_crash_after_submit_then_retry(strategy: RetryStrategy) -> None:
    started = pendulum.now("UTC").isoformat()
    store, run_id = TaskStateStore(), f"manual__{uuid.uuid4().hex}"
    params = {"seconds": 1.5, "result": {"rows": 42}}

    def operator() -> SubmitAndWaitOperator:
        return SubmitAndWaitOperator(
            task_id="t", job_type="sleep", job_params=params, poll_interval=0.3, deferrable=True, retry_strategy=strategy
        )

    with pytest.raises(TaskDeferred):  # try 1 submits, stores the job id, defers — and the worker dies
        operator().execute(try_context(store, run_id, 1))
    first_job = store.values[STATE_KEY]
    second_try = try_context(store, run_id, 2)
    try:
        result = operator().execute(second_try)
    except TaskDeferred as deferred:
        event = asyncio.run(anext(JobStatusTrigger(**deferred.trigger.serialize()[1]).run())).payload
        result = operator().execute_complete(second_try, event)
    assert result == {"rows": 42}
    jobs = jobs_since(started, "sleep")
    if strategy is RetryStrategy.REATTACH:
        assert [j.id for j in jobs] == [first_job] and second_try["ti"].xcom["job_id"] == first_job
    else:
        assert len(jobs) == 2 and second_try["ti"].xcom["job_id"] != first_job


def test_retry_after_a_failed_job_submits_exactly_one_new_job(tmp_path: Path) -> None:
    started = pendulum.now("UTC").isoformat()
    store, run_id = TaskStateStore(), f"manual__{uuid.uuid4().hex}"
    marker = tmp_path / "failed-once"

    def operator() -> SubmitAndWaitOperator:
        return SubmitAndWaitOperator(
            task_id="t",
            job_type="python",
            job_params={"callable": "tests.support.pyjobs:fail_first_time", "kwargs": {"marker": str(marker)}},
            poll_interval=0.2,
            deferrable=False,
        )

    with pytest.raises(AirflowException, match="first run fails on purpose"):
        operator().execute(try_context(store, run_id, 1))
    assert operator().execute(try_context(store, run_id, 2)) == {"ok": True}
    jobs = jobs_since(started, "python")
    assert sorted(j.raw_status for j in jobs) == ["FAILED", "SUCCEEDED"]


def test_already_succeeded_job_is_returned_without_submitting() -> None:
    started = pendulum.now("UTC").isoformat()
    store, run_id = TaskStateStore(), f"manual__{uuid.uuid4().hex}"

    def operator() -> SubmitAndWaitOperator:
        return SubmitAndWaitOperator(
            task_id="t", job_type="sleep", job_params={"seconds": 0.2}, poll_interval=0.2, deferrable=False
        )

    first = operator().execute(try_context(store, run_id, 1))
    assert operator().execute(try_context(store, run_id, 2)) == first
    assert len(jobs_since(started, "sleep")) == 1


class FakeTriggerer:
    """Airflow's own TriggerRunner.run_trigger drives the trigger, as in a real triggerer."""

    def __init__(self) -> None:
        from airflow.jobs.triggerer_job_runner import TriggerRunner

        self.runner = TriggerRunner()

    async def start(self, trigger: JobStatusTrigger) -> asyncio.Task[None]:
        self.runner.triggers[1] = {"name": "probe", "events": 0, "task": None}
        task = asyncio.create_task(self.runner.run_trigger(1, trigger))
        await asyncio.sleep(1.0)  # let the trigger get going (connection, first polls)
        return task


def job_status(job_id: str) -> JobStatus | None:
    return JobServiceHook().get_job(job_id).status


@pytest.mark.parametrize("user_action", [True, False], ids=["user-kill", "triggerer-shutdown"])
def test_trigger_on_kill_cancels_but_cleanup_alone_does_not(user_action: bool) -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", {"seconds": 120}))
    trigger = JobStatusTrigger(job_id=job.id, poll_policy={"interval": 1.0}, cancel_on_kill=True)

    async def scenario() -> None:
        triggerer = FakeTriggerer()
        task = await triggerer.start(trigger)
        # A user action cancels with Airflow's sentinel message (on_kill, then cleanup);
        # a triggerer shutdown or reassignment cancels without it (cleanup only).
        task.cancel("__airflow_user_action__" if user_action else None)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    if user_action and TRIGGER_ON_KILL:
        wait_until(lambda: job_status(job.id) is JobStatus.CANCELLED, 1.0, "the job is CANCELLED")
    else:
        # Neither a shutdown nor, on Airflow 3.2 (no trigger on_kill: docs/compatibility.md), a
        # user action runs any code of ours: the job keeps running.
        time.sleep(1.0)
        assert job_status(job.id) is JobStatus.RUNNING


def test_sensor_trigger_never_cancels_the_job_it_watches_by_default() -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", {"seconds": 120}))
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, poll_interval=1.0, timeout=600, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(make_context())
    trigger = JobStatusTrigger(**deferred.value.trigger.serialize()[1])

    async def scenario() -> None:
        task = await FakeTriggerer().start(trigger)
        task.cancel("__airflow_user_action__")
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    sensor.on_kill()
    time.sleep(1.0)
    assert job_status(job.id) is JobStatus.RUNNING
    JobServiceHook().cancel_job(job.id)


def test_worker_on_kill_during_a_non_deferrable_wait_cancels_the_job() -> None:
    op = SubmitAndWaitOperator(task_id="t", job_type="sleep", job_params={"seconds": 120}, poll_interval=0.3, deferrable=False)
    context = make_context()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(context)
        except BaseException as exc:  # the wait ends when the job is cancelled
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(lambda: "job_id" in context["ti"].xcom, 10, "the job is submitted")
    time.sleep(0.5)
    op.on_kill()  # what Airflow calls when the task is killed on the worker
    worker.join(timeout=10)
    assert job_status(context["ti"].xcom["job_id"]) is JobStatus.CANCELLED
    assert outcome and "CANCELLED" in str(outcome[0])
