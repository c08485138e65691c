"""Airflow-side helpers shared by the sensor and the operators (one place for timeouts and outcomes)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Context, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from jobservice_provider.core.errors import JobServiceError
from jobservice_provider.hooks.jobservice import JobServiceHook

# How long a task waits for a cancelled job to stop when it times out or is killed.
CANCEL_WAIT = 60.0


def cancel_for_task(hook: JobServiceHook, job_id: str, why: str, log: Any) -> None:
    """Cancel a task's job and wait (bounded) until it stopped; a failure is logged, never raised,
    because the task is already ending for another reason."""
    try:
        result = hook.cancel_and_wait(job_id, deadline=time.time() + CANCEL_WAIT)
    except JobServiceError as exc:
        log.error("Could not cancel job %s (%s): %s", job_id, why, exc)
        return
    log.info("Cancelled job %s because %s: %s", job_id, why, result.message)


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` setting."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def deadline_for(context: Context, limit: timedelta | float | None) -> float | None:
    """The absolute deadline (epoch seconds) of a limit counted from when this try began.

    Counting from the try's first start (across reschedules and deferrals, not from now)
    keeps the time *remaining* when a task pokes again, defers again or resumes, instead
    of granting a fresh full timeout each time.
    """
    if limit is None:
        return None
    seconds = limit.total_seconds() if isinstance(limit, timedelta) else float(limit)
    ti = context.get("ti")
    started: datetime | None = None
    get_first_reschedule = getattr(ti, "get_first_reschedule_date", None)
    if get_first_reschedule is not None:
        started = get_first_reschedule(context)
    if started is None:
        started = getattr(ti, "start_date", None)
    return (started.timestamp() if started is not None else time.time()) + seconds


def remaining(deadline: float | None) -> timedelta | None:
    """Time left until ``deadline``, for ``defer(timeout=...)``; never negative."""
    if deadline is None:
        return None
    return timedelta(seconds=max(0.0, deadline - time.time()))


def failed_job_error(message: str) -> AirflowFailException:
    """The error for a watched job that ended in a failure status.

    Retrying the watching task cannot change a job that already ended, so it does not
    retry (a sensor with ``soft_fail`` is skipped instead).
    """
    return AirflowFailException(message)


def check_event(event: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the trigger's event; a missing or foreign event is an error, not a success."""
    if not isinstance(event, dict) or "status" not in event or "job_id" not in event:
        raise AirflowException(f"Unexpected trigger event: {event!r}")
    return event
