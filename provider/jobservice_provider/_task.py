"""Airflow-side helpers shared by the sensor and the operators (one place for timeouts and outcomes)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Context, conf

from jobservice_provider import _settings as settings
from jobservice_provider._compat import TRIGGER_ON_KILL, AirflowException, AirflowFailException, task_state_store
from jobservice_provider.core.errors import JobFailedError, JobServiceError, JobStaleError
from jobservice_provider.core.job import Job
from jobservice_provider.hooks.jobservice import JobServiceHook


def cancel_for_task(hook: JobServiceHook, job_id: str, why: str, log: Any) -> None:
    """Cancel a task's job and wait until it stopped, for at most ``[jobservice] cancel_wait``
    seconds; a failure is logged, never raised, because the task is already ending for another reason."""
    try:
        wait = settings.seconds("cancel_wait")
    except ValueError as exc:
        wait = settings.SECONDS["cancel_wait"].default
        log.error("%s; waiting the default %gs", exc, wait)
    try:
        result = hook.cancel_and_wait(job_id, deadline=time.time() + wait)
    except JobServiceError as exc:
        log.error("Could not cancel job %s (%s): %s", job_id, why, exc)
        return
    log.info("Cancelled job %s because %s: %s", job_id, why, result.message)


def note_cancel_on_kill_while_deferred(cancel_on_kill: bool, job_id: str, log: Any) -> None:
    """Before deferring: say so where Airflow cannot honour ``cancel_on_kill`` while deferred.

    Airflow 3.2 ends a deferred task that a user marks failed/success or clears without calling
    the trigger's ``on_kill`` (3.3 added that), so no code of ours runs and the job keeps going.
    """
    if cancel_on_kill and not TRIGGER_ON_KILL:
        log.info(
            "This Airflow version does not tell a trigger when its deferred task is marked failed/success or "
            "cleared (Airflow 3.3 does): job %s keeps running then; cancel it with CancelJobOperator",
            job_id,
        )


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` setting."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def _seconds(limit: timedelta | float) -> float:
    return limit.total_seconds() if isinstance(limit, timedelta) else float(limit)


def deadline_after(limit: timedelta | float | None) -> float | None:
    """The absolute deadline (epoch seconds) of ``limit`` counted from now.

    For ``execution_timeout``, called when ``execute`` (or ``execute_complete``) begins: Airflow
    starts its own alarm there, not at the task instance's ``start_date``, which also holds the
    task's start-up (seconds on a busy worker).
    """
    return None if limit is None else time.time() + _seconds(limit)


# Task state store key of a sensor's first try's start: a deferrable sensor's timeout spans
# its retries, as Airflow's reschedule mode counts it.
SENSOR_STARTED_KEY = "jobservice_sensor_started"


def sensor_started(context: Context, retries: int) -> float:
    """When the sensor's first try started (epoch seconds), as Airflow's reschedule mode counts
    a sensor's ``timeout``: from the first try's start, across reschedules, deferrals and retries.

    The first try's start is kept in the task state store (Airflow 3.3), keyed by the number of
    that first try, so a cleared task starts a new count. Without a store (Airflow 3.2), or when
    the store fails, a retry counts from its own start.
    """
    ti = context.get("ti")
    get_first_reschedule = getattr(ti, "get_first_reschedule_date", None)
    rescheduled = get_first_reschedule(context) if get_first_reschedule is not None else None
    if rescheduled is not None:
        return float(rescheduled.timestamp())
    started_at: datetime | None = getattr(ti, "start_date", None)
    started = started_at.timestamp() if started_at is not None else time.time()
    max_tries = getattr(ti, "max_tries", None)
    first_try = int(max_tries) - retries + 1 if isinstance(max_tries, int) else 1
    store = task_state_store(context)
    if store is None:
        return started
    try:
        stored = store.get(SENSOR_STARTED_KEY)
        at = stored.get("at") if isinstance(stored, dict) and stored.get("first_try") == first_try else None
        if isinstance(at, int | float) and not isinstance(at, bool):
            return min(float(at), started)
        # First try of this count (or its start was never stored): this try starts the count.
        store.set(SENSOR_STARTED_KEY, {"first_try": first_try, "at": started})
    except Exception:  # a failing store costs the count across retries, never the task
        return started
    return started


def grace_seconds(grace: timedelta | float) -> float:
    """A ``not_found_grace`` argument (seconds or a timedelta) in seconds, checked."""
    seconds = _seconds(grace)
    if not seconds >= 0:
        raise ValueError(f"not_found_grace must be >= 0 seconds, got {grace!r}")
    return seconds


def remaining(deadline: float | None) -> timedelta | None:
    """Time left until ``deadline``, for ``defer(timeout=...)``; never negative."""
    if deadline is None:
        return None
    return timedelta(seconds=max(0.0, deadline - time.time()))


class JobFailedException(AirflowException, JobFailedError):
    """The job a task waited for failed: an Airflow error (retried if ``retries`` remain) that
    ``except JobFailedError`` catches too."""

    def __init__(self, message: str, *, job_id: str = "", status: str = "", remote_error: str | None = None) -> None:
        JobFailedError.__init__(self, job_id, status, remote_error, message=message)


class WatchedJobFailed(AirflowFailException, JobFailedError):
    """The job a sensor watched failed: no retry (retrying cannot change a job that ended),
    skipped with ``soft_fail``; ``except JobFailedError`` catches it too."""

    def __init__(self, message: str, *, job_id: str = "", status: str = "", remote_error: str | None = None) -> None:
        JobFailedError.__init__(self, job_id, status, remote_error, message=message)


class StaleJobException(AirflowFailException, JobStaleError):
    """The job a sensor watched stayed RUNNING without any change for ``stale_after``: like the
    sensor's timeout, no retry and skipped with ``soft_fail``; ``except JobStaleError`` catches it."""

    def __init__(self, message: str, *, job_id: str = "", last_status: str | None = "RUNNING") -> None:
        JobStaleError.__init__(self, job_id, last_status, message)


def stale_seconds(stale_after: timedelta | float | None) -> float | None:
    """A ``stale_after`` argument (a timedelta or seconds, or None) in seconds, checked."""
    if stale_after is None:
        return None
    seconds = _seconds(stale_after)
    if not seconds > 0:
        raise ValueError(f"stale_after must be a positive duration, got {stale_after!r}")
    return seconds


def _failure_fields(job: Job | dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(job, Job):
        return {"job_id": job.id, "status": job.raw_status, "remote_error": str(job.error) if job.error else None}
    if isinstance(job, dict):
        error = job.get("error")
        remote = f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else None
        return {"job_id": str(job.get("id") or ""), "status": str(job.get("status") or ""), "remote_error": remote}
    return {}


def failed_job_error(message: str, job: Job | dict[str, Any] | None = None) -> WatchedJobFailed:
    """The error for a watched job that ended in a failure status (``job``: its record, or the
    summary a trigger event carries), with its real status and remote error."""
    return WatchedJobFailed(message, **_failure_fields(job))


def job_failed(message: str, job: Job | dict[str, Any] | None = None) -> JobFailedException:
    """The error for a task's own job that ended in a failure status (retryable)."""
    return JobFailedException(message, **_failure_fields(job))


def check_event(event: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the trigger's event; a missing or foreign event is an error, not a success."""
    if not isinstance(event, dict) or "status" not in event or "job_id" not in event:
        raise AirflowException(f"Unexpected trigger event: {event!r}")
    return event
