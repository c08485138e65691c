"""Sensor and operator semantics as Airflow users expect them (issue 12), against the real local service.

The task instance is the one faked edge (``make_context``); what Airflow does around a task is
done here as Airflow does it: ``resume_execution`` for a resumed task, ``on_kill`` after a
timeout, Airflow's own ``timeout`` alarm around ``execute``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException, AirflowTaskTimeout, TaskDeferred
from tests.conftest import conn_json
from tests.support.airflow_context import make_context
from tests.support.fault_proxy import FaultProxy, status
from tests.support.hiding_proxy import HidingProxy

from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.errors import JobFailedError, JobStaleError, JobTimeoutError
from jobservice_provider.core.keys import sendable, task_key
from jobservice_provider.core.status import JobStatus
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import STATE_KEY, SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor
from jobservice_provider.triggers.jobservice import JobStatusTrigger

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("jobservice_conn")]
NEVER_ENDS = {"seconds": 600}


class TaskStateStore:
    """Stands in for Airflow's ``task_state_store`` accessor (same get/set), kept across tries."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = value


def trigger_event(trigger: JobStatusTrigger) -> dict[str, Any]:
    """Rebuild the trigger from its serialized form, as the triggerer does, and take its event."""
    _, kwargs = trigger.serialize()

    async def first() -> dict[str, Any]:
        return (await anext(JobStatusTrigger(**kwargs).run())).payload

    return asyncio.run(first())


def status_of(job_id: str) -> JobStatus | None:
    return JobServiceHook().get_job(job_id).status


def cancel_quietly(job_id: str) -> None:
    JobServiceHook().cancel_job(job_id)


def timeout_operator(**kwargs: Any) -> SubmitAndWaitOperator:
    settings: dict[str, Any] = {
        "task_id": "t",
        "job_type": "sleep",
        "job_params": NEVER_ENDS,
        "poll_interval": 0.3,
        "execution_timeout": timedelta(seconds=2),
    }
    settings.update(kwargs)
    return SubmitAndWaitOperator(**settings)


# -- 1. cancel_on_timeout and cancel_on_kill are independent on every path ----------------------


@pytest.mark.parametrize("cancel_on_timeout", [False, True], ids=["keep-on-timeout", "cancel-on-timeout"])
def test_deferred_timeout_then_the_on_kill_airflow_sends_follow_cancel_on_timeout_only(cancel_on_timeout: bool) -> None:
    op = timeout_operator(deferrable=True, cancel_on_timeout=cancel_on_timeout, cancel_on_kill=not cancel_on_timeout)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    job_id = context["ti"].xcom["job_id"]
    event = trigger_event(deferred.value.trigger)
    assert event["status"] == "timeout"
    with pytest.raises(AirflowTaskTimeout):
        op.resume_execution("execute_complete", {"event": event}, context)
    op.on_kill()  # what Airflow's task runner does after any AirflowTaskTimeout
    if cancel_on_timeout:
        assert status_of(job_id) is JobStatus.CANCELLED
    else:
        assert status_of(job_id) is JobStatus.RUNNING
        cancel_quietly(job_id)


def test_worker_wait_timeout_keeps_the_job_without_cancel_on_timeout() -> None:
    op = timeout_operator(deferrable=False, cancel_on_timeout=False, cancel_on_kill=True)
    context = make_context()
    with pytest.raises(AirflowTaskTimeout):
        op.execute(context)
    op.on_kill()
    job_id = context["ti"].xcom["job_id"]
    assert status_of(job_id) is JobStatus.RUNNING
    cancel_quietly(job_id)


def test_airflows_own_alarm_on_the_worker_counts_as_a_timeout_not_a_kill() -> None:
    from airflow.sdk.execution_time.timeout import timeout

    # Airflow's execution_timeout alarm fires inside the wait (here earlier than the operator's
    # own deadline would, as on a worker that started the clock first).
    op = timeout_operator(deferrable=False, cancel_on_timeout=False, cancel_on_kill=True, execution_timeout=timedelta(seconds=8))
    context = make_context()
    with pytest.raises(AirflowTaskTimeout), timeout(2):
        op.execute(context)
    op.on_kill()
    job_id = context["ti"].xcom["job_id"]
    assert status_of(job_id) is JobStatus.RUNNING
    cancel_quietly(job_id)


@pytest.mark.parametrize("cancel_on_timeout", [False, True], ids=["keep-on-timeout", "cancel-on-timeout"])
def test_airflows_deferral_timeout_backstop_follows_cancel_on_timeout(cancel_on_timeout: bool) -> None:
    from airflow.sdk.bases.operator import TriggerFailureReason

    store = TaskStateStore()
    op = timeout_operator(deferrable=True, cancel_on_timeout=cancel_on_timeout, execution_timeout=timedelta(seconds=30))
    context = make_context()
    context["task_state_store"] = store
    with pytest.raises(TaskDeferred):
        op.execute(context)
    job_id = store.values[STATE_KEY]
    # The scheduler's trigger timeout resumes the task in a new process with next_method "__fail__".
    resumed = timeout_operator(deferrable=True, cancel_on_timeout=cancel_on_timeout, execution_timeout=timedelta(seconds=30))
    with pytest.raises(AirflowTaskTimeout, match="execution_timeout"):
        resumed.resume_execution("__fail__", {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context)
    resumed.on_kill()
    if cancel_on_timeout:
        assert status_of(job_id) is JobStatus.CANCELLED
    else:
        assert status_of(job_id) is JobStatus.RUNNING
        cancel_quietly(job_id)


# -- 2. soft_fail on every path of the sensor -----------------------------------------------------


def failed_job() -> str:
    job = JobServiceHook().submit(SubmitRequest("sleep", {"seconds": 0, "fail": "failed on purpose"}))
    deadline = time.monotonic() + 10
    while status_of(job.id) is not JobStatus.FAILED:
        assert time.monotonic() < deadline, "the job did not fail"
        time.sleep(0.05)
    return job.id


@pytest.mark.parametrize("switch", ["soft_fail", "never_fail"])
def test_deferrable_sensor_skips_a_job_failed_before_its_first_poke(switch: str) -> None:
    sensor = JobCompleteSensor(task_id="s", job_id=failed_job(), deferrable=True, poll_interval=0.5, **{switch: True})
    with pytest.raises(AirflowSkipException, match=switch):
        sensor.execute(make_context())


def test_deferrable_sensor_without_soft_fail_fails_a_failed_job_without_retry() -> None:
    sensor = JobCompleteSensor(task_id="s", job_id=failed_job(), deferrable=True, poll_interval=0.5)
    with pytest.raises(AirflowFailException, match="FAILED"):
        sensor.execute(make_context())


def test_deferrable_sensor_skips_a_job_failing_while_deferred() -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", {"seconds": 1, "fail": "failed on purpose"}))
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, deferrable=True, poll_interval=0.3, soft_fail=True)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    event = trigger_event(deferred.value.trigger)
    assert event["status"] == "failed"
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("execute_complete", {"event": event}, context)


# -- 5. deadlines as Airflow measures them -------------------------------------------------------


def timed_event(trigger: JobStatusTrigger) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    event = trigger_event(trigger)
    return event, time.monotonic() - started


def test_execution_timeout_counts_from_execute_not_from_a_slow_start_date() -> None:
    # 30 s of start-up before execute (a busy worker): Airflow's alarm starts at execute, so
    # must the deferred wait's deadline.
    op = timeout_operator(deferrable=True, execution_timeout=timedelta(seconds=4))
    context = make_context(start_date=datetime.now(UTC) - timedelta(seconds=30))
    begun = time.monotonic()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert 3.5 < deferred.value.timeout.total_seconds() <= 4
    event, _ = timed_event(deferred.value.trigger)
    assert event["status"] == "timeout"
    assert 4 - 0.2 <= time.monotonic() - begun <= 4 + 1  # margin: 5% of 4 s
    cancel_quietly(context["ti"].xcom["job_id"])


def test_a_short_sensor_timeout_ends_no_more_than_its_margin_early() -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", NEVER_ENDS))
    start_date = datetime.now(UTC)
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, poll_interval=0.3, timeout=4, deferrable=True)
    context = make_context(start_date=start_date)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    event, _ = timed_event(deferred.value.trigger)
    ended = datetime.now(UTC)
    assert event["status"] == "timeout"
    assert 4 - 0.2 <= (ended - start_date).total_seconds() <= 4 + 1
    cancel_quietly(job.id)


# -- 3. not_found_grace: an id not yet visible is waited for, then fails naming it ---------------


@pytest.fixture
def hiding(jobservice_conn: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[HidingProxy]:
    """The default connection goes through a proxy that can hide jobs for a while."""
    proxy = HidingProxy(jobservice_conn.base_url)
    with proxy.threaded():
        monkeypatch.setenv("AIRFLOW_CONN_JOBSERVICE_DEFAULT", conn_json(proxy.url, jobservice_conn.token, poll_interval=0.5))
        yield proxy


def test_a_deferrable_sensor_waits_for_a_job_that_appears_within_its_grace(hiding: HidingProxy) -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", NEVER_ENDS))
    hiding.hide(job.id, 10)  # as if created 10 s after the sensor started
    sensor = JobCompleteSensor(
        task_id="s", job_id=job.id, target_statuses=["RUNNING"], poll_interval=0.5, not_found_grace=30, deferrable=True
    )
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    event = trigger_event(deferred.value.trigger)
    assert event["status"] == "success", event
    assert 10 <= time.monotonic() - hiding.first_asked[job.id] <= 12
    assert sensor.resume_execution("execute_complete", {"event": event}, context)["id"] == job.id
    cancel_quietly(job.id)


def test_a_deferrable_sensor_fails_naming_the_id_when_its_grace_ends(hiding: HidingProxy) -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", NEVER_ENDS))
    hiding.hide(job.id, 600)
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, poll_interval=0.5, not_found_grace=5, deferrable=True, timeout=60)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    event = trigger_event(deferred.value.trigger)
    assert 5 <= time.monotonic() - hiding.first_asked[job.id] <= 7
    assert event["status"] == "error" and job.id in event["message"] and "not_found_grace=5s" in event["message"]
    with pytest.raises(AirflowException, match=f"{job.id}.*not_found_grace=5s"):
        sensor.resume_execution("execute_complete", {"event": event}, context)
    cancel_quietly(job.id)


def test_a_poke_mode_sensor_waits_out_its_grace_then_fails_naming_the_id(hiding: HidingProxy) -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", NEVER_ENDS))
    hiding.hide(job.id, 600)
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, poll_interval=0.5, not_found_grace=2, deferrable=False, timeout=60)
    with pytest.raises(AirflowException, match=f"{job.id}.*not_found_grace=2s"):
        sensor.execute(make_context())
    # The grace starts just before the proxy first sees the id asked for (a request's time earlier).
    assert 2 - 0.1 <= time.monotonic() - hiding.first_asked[job.id] <= 4
    cancel_quietly(job.id)


@pytest.mark.parametrize("visible_after", [3, 600], ids=["appears", "never-appears"])
def test_a_retry_waits_for_the_stored_job_within_the_grace_and_never_submits_beside_it(
    hiding: HidingProxy, visible_after: float
) -> None:
    store, run_id = TaskStateStore(), f"manual__{uuid.uuid4().hex}"

    def operator() -> SubmitAndWaitOperator:
        return SubmitAndWaitOperator(
            task_id="t", job_type="sleep", job_params=NEVER_ENDS, poll_interval=0.5, deferrable=True, not_found_grace=6
        )

    first = make_context(run_id=run_id)
    first["task_state_store"] = store
    with pytest.raises(TaskDeferred):
        operator().execute(first)  # try 1 stored its job, then its worker died
    job_id = store.values[STATE_KEY]
    hiding.hide(job_id, visible_after)
    second = make_context(run_id=run_id, try_number=2)
    second["task_state_store"] = store
    submits = hiding.requests["submit"]
    if visible_after < 6:
        with pytest.raises(TaskDeferred) as deferred:
            operator().execute(second)
        assert deferred.value.trigger.job_id == job_id  # reattached
    else:
        with pytest.raises(AirflowException, match=f"{job_id}.*not_found_grace=6s"):
            operator().execute(second)
        # The grace starts just before the proxy first sees the id asked for (a request's time earlier).
        assert 6 - 0.1 <= time.monotonic() - hiding.first_asked[job_id] <= 8
    assert hiding.requests["submit"] == submits  # no job submitted beside the stored one
    cancel_quietly(job_id)


# -- 7. idempotency keys of any length ------------------------------------------------------------


def test_ids_of_250_characters_submit_and_a_retry_finds_the_same_job_by_its_key() -> None:
    ids = {"dag_id": "d" * 250, "task_id": "t" * 250, "run_id": f"manual__{uuid.uuid4().hex}"}

    def operator() -> SubmitAndWaitOperator:
        return SubmitAndWaitOperator(task_id="t" * 250, job_type="sleep", job_params=NEVER_ENDS, deferrable=True)

    first = make_context(**ids)
    with pytest.raises(TaskDeferred):
        operator().execute(first)  # no task state store: a retry can only find the job by its key
    job = JobServiceHook().get_job(first["ti"].xcom["job_id"])
    assert job.key == sendable(task_key(ids["dag_id"], ids["task_id"], ids["run_id"], -1)) and len(job.key) == 255
    second = make_context(try_number=2, **ids)
    with pytest.raises(TaskDeferred):
        operator().execute(second)
    assert second["ti"].xcom["job_id"] == job.id
    cancel_quietly(job.id)


def test_a_key_the_service_rejects_is_named_with_its_length(jobservice_conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = FaultProxy(jobservice_conn.base_url)
    problem = json.dumps({"type": "invalid-request", "status": 400, "detail": "key too long", "header": "Idempotency-Key"})
    proxy.add(status(400, problem, Content_Type="application/problem+json"), route="submit")
    with proxy.threaded():
        monkeypatch.setenv("AIRFLOW_CONN_JOBSERVICE_DEFAULT", conn_json(proxy.url, jobservice_conn.token))
        op = SubmitAndWaitOperator(task_id="t", job_type="sleep", job_params={"seconds": 0}, idempotency_key="k" * 40)
        with pytest.raises(AirflowException, match=r"rejected the idempotency key 'k{40}' \(40 characters\): key too long"):
            op.execute(make_context())


# -- 12. errors tell the truth ----------------------------------------------------------------------


def test_the_retry_line_names_the_real_status_of_the_earlier_job(capsys: pytest.CaptureFixture[str]) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"

    def operator() -> SubmitAndWaitOperator:
        return SubmitAndWaitOperator(task_id="t", job_type="sleep", job_params=NEVER_ENDS, deferrable=True)

    first = make_context(run_id=run_id)  # no task state store: the retry finds the job by its key
    with pytest.raises(TaskDeferred):
        operator().execute(first)
    earlier = first["ti"].xcom["job_id"]
    JobServiceHook().cancel_and_wait(earlier, deadline=time.time() + 30)
    second = make_context(run_id=run_id, try_number=2)
    with pytest.raises(TaskDeferred):
        operator().execute(second)
    out = capsys.readouterr().out
    assert f"job {earlier} under this task's key ended CANCELLED; submitted new job" in out
    cancel_quietly(second["ti"].xcom["job_id"])


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_a_failed_job_raises_a_job_failed_error_with_its_status_and_remote_error(deferrable: bool) -> None:
    op = SubmitAndWaitOperator(
        task_id="t",
        job_type="sleep",
        job_params={"seconds": 0.5, "fail": "disk full"},
        poll_interval=0.3,
        deferrable=deferrable,
    )
    context = make_context()
    with pytest.raises(JobFailedError) as failed:
        try:
            op.execute(context)
        except TaskDeferred as deferred:
            op.resume_execution("execute_complete", {"event": trigger_event(deferred.trigger)}, context)
    assert isinstance(failed.value, AirflowException) and not isinstance(failed.value, AirflowFailException)  # retried
    assert failed.value.job_id == context["ti"].xcom["job_id"] and failed.value.status == "FAILED"
    assert "disk full" in (failed.value.remote_error or "")


def test_a_sensor_on_a_failed_job_raises_a_job_failed_error_airflow_does_not_retry() -> None:
    job_id = failed_job()
    sensor = JobCompleteSensor(task_id="s", job_id=job_id, deferrable=False, poll_interval=0.3)
    with pytest.raises(JobFailedError) as failed:
        sensor.execute(make_context())
    assert isinstance(failed.value, AirflowFailException)
    assert (failed.value.job_id, failed.value.status) == (job_id, "FAILED") and "failed on purpose" in str(failed.value)


def test_a_timeout_is_airflows_task_timeout_caused_by_a_job_timeout_error() -> None:
    op = timeout_operator(deferrable=False)
    context = make_context()
    with pytest.raises(AirflowTaskTimeout) as timed_out:
        op.execute(context)
    cause = timed_out.value.__cause__
    assert isinstance(cause, JobTimeoutError) and cause.job_id == context["ti"].xcom["job_id"]
    assert cause.last_status == "RUNNING"


# -- 10. REATTACH notices changed inputs ------------------------------------------------------------


def compute(version: int, **kwargs: Any) -> SubmitAndWaitOperator:
    settings: dict[str, Any] = {
        "task_id": "t",
        "job_type": "sleep",
        "job_params": {"seconds": 0.2, "result": {"version": version}},
        "poll_interval": 0.2,
        "deferrable": False,
        "execution_timeout": timedelta(seconds=60),
    }
    return SubmitAndWaitOperator(**{**settings, **kwargs})


def test_a_clear_with_changed_params_submits_a_new_job_the_same_params_return_the_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, run_id = TaskStateStore(), f"manual__{uuid.uuid4().hex}"

    def try_(n: int) -> dict[str, Any]:
        context = make_context(run_id=run_id, try_number=n)
        context["task_state_store"] = store
        return context

    assert compute(1).execute(try_(1)) == {"version": 1}
    first_job = store.values[STATE_KEY]
    assert compute(1).execute(try_(2)) == {"version": 1} and store.values[STATE_KEY] == first_job  # same inputs
    capsys.readouterr()
    assert compute(2).execute(try_(3)) == {"version": 2}  # cleared after job_params changed
    new_job = store.values[STATE_KEY]
    assert new_job != first_job
    out = capsys.readouterr().out
    assert (
        f"Try 3, retry_strategy REATTACH: job type, params or meta changed since job {first_job} of an earlier try "
        f"(SUCCEEDED); submitted new job {new_job}"
    ) in out
    assert compute(2).execute(try_(4)) == {"version": 2} and store.values[STATE_KEY] == new_job


def test_changed_params_cancel_the_live_job_of_the_old_params() -> None:
    store, run_id = TaskStateStore(), f"manual__{uuid.uuid4().hex}"
    first = make_context(run_id=run_id)
    first["task_state_store"] = store
    with pytest.raises(TaskDeferred):
        compute(1, job_params=NEVER_ENDS, deferrable=True).execute(first)  # its worker died
    old_job = store.values[STATE_KEY]
    second = make_context(run_id=run_id, try_number=2)
    second["task_state_store"] = store
    assert compute(2).execute(second) == {"version": 2}
    assert status_of(old_job) is JobStatus.CANCELLED  # nothing would ever use what it computes


def test_without_a_task_state_store_changed_params_are_told_by_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    assert compute(1).execute(make_context(run_id=run_id)) == {"version": 1}
    second = make_context(run_id=run_id, try_number=2)
    assert compute(2).execute(second) == {"version": 2}
    assert "job type, params or meta changed since the job under this task's key" in capsys.readouterr().out
    third = make_context(run_id=run_id, try_number=3)
    assert compute(2).execute(third) == {"version": 2}
    assert third["ti"].xcom["job_id"] == second["ti"].xcom["job_id"]  # found again by the key of these inputs


# -- 9. at most one live job per task instance, with or without a task state store -----------------


def jobs_of(run_id: str) -> list[Any]:
    prefix = f"airflow:test_dag:test_task:{run_id}:"
    return [job for job in JobServiceHook().list_jobs(ListQuery(job_type="sleep")) if (job.key or "").startswith(prefix)]


@pytest.mark.parametrize("with_store", [False, True], ids=["no-task-state-store", "died-before-storing"])
def test_a_retry_reattaches_to_the_live_job_an_earlier_try_left_behind(with_store: bool) -> None:
    store, run_id = TaskStateStore(), f"manual__{uuid.uuid4().hex}"

    def try_(n: int) -> dict[str, Any]:
        context = make_context(run_id=run_id, try_number=n)
        if with_store:
            context["task_state_store"] = store
        return context

    def operator() -> SubmitAndWaitOperator:
        return SubmitAndWaitOperator(task_id="t", job_type="sleep", job_params=NEVER_ENDS, deferrable=True)

    first = try_(1)
    with pytest.raises(TaskDeferred):
        operator().execute(first)
    JobServiceHook().cancel_and_wait(first["ti"].xcom["job_id"], deadline=time.time() + 30)  # try 1's job CANCELLED
    second = try_(2)
    with pytest.raises(TaskDeferred):
        operator().execute(second)  # try 2 submits a new job, then its worker dies...
    second_job = second["ti"].xcom["job_id"]
    if with_store:
        store.values[STATE_KEY] = first["ti"].xcom["job_id"]  # ...before it could store the job id
    third = try_(3)
    with pytest.raises(TaskDeferred):
        operator().execute(third)
    assert third["ti"].xcom["job_id"] == second_job
    running = [job.id for job in jobs_of(run_id) if job.status is JobStatus.RUNNING]
    assert running == [second_job]  # exactly one live job for the task instance
    cancel_quietly(second_job)


# -- 11. stale_after: a job that hangs is noticed ---------------------------------------------------

STOPS = {"callable": "tests.support.pyjobs:wait_for_file", "kwargs": {"path": "/nonexistent/go", "timeout_s": 600}}


def since_last_change(event: dict[str, Any]) -> float:
    job = JobServiceHook().get_job(event["job_id"])
    assert job.updated_at is not None
    return time.time() - job.updated_at.timestamp()


def test_an_operator_whose_job_stops_changing_ends_stale_and_cancels_it() -> None:
    op = SubmitAndWaitOperator(
        task_id="t", job_type="python", job_params=STOPS, poll_interval=0.5, stale_after=timedelta(seconds=5), deferrable=True
    )
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = trigger_event(deferred.value.trigger)
    assert event["status"] == "stale" and "stale_after=5s" in event["message"], event
    assert 5 <= since_last_change(event) <= 7  # the progress "1/2" was the last change
    with pytest.raises(AirflowTaskTimeout, match="is stale") as timed_out:
        op.resume_execution("execute_complete", {"event": event}, context)
    assert isinstance(timed_out.value.__cause__, JobStaleError)
    assert status_of(event["job_id"]) is JobStatus.CANCELLED  # like a timeout: cancel_on_timeout


def test_a_sensor_on_a_job_that_stops_changing_fails_stale_without_cancelling_it() -> None:
    job = JobServiceHook().submit(SubmitRequest("python", STOPS))
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, poll_interval=0.5, stale_after=5, deferrable=False, timeout=60)
    with pytest.raises(JobStaleError, match="is stale"):
        sensor.execute(make_context())
    assert 5 <= time.time() - JobServiceHook().get_job(job.id).updated_at.timestamp() <= 7  # type: ignore[union-attr]
    assert status_of(job.id) is JobStatus.RUNNING  # a sensor watches
    cancel_quietly(job.id)
