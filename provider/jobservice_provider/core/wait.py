"""The one wait loop: used by the trigger in the triggerer and by the hook on a worker.

It polls with the jittered :class:`PollPolicy`, rides out transient faults for the
:class:`RetryPolicy`'s time budget, stops at an absolute deadline, and never counts
attempts. Clock, sleep and random source are injectable so tests step it exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from jobservice_provider.core.errors import JobNotFoundError, JobServiceError, TransientError
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import PollPolicy, Rand, RetryPolicy
from jobservice_provider.core.status import FAILURE, SUCCESS, JobStatus, WaitVerdict, verdict

DEFAULT_NOT_FOUND_GRACE = 60.0


class JobLookup(Protocol):
    async def get_job(self, job_id: str) -> Job: ...


class Outcome(str, enum.Enum):
    """How a wait ended; also the ``status`` of the trigger's event."""

    SUCCESS = "success"  # a target status was reached
    FAILED = "failed"  # the job ended in a failure status
    TIMEOUT = "timeout"  # the deadline passed first
    ERROR = "error"  # we could not find out (permanent error, or transient budget spent)


@dataclasses.dataclass(frozen=True)
class WaitResult:
    """The end of a wait: the outcome, the last job record seen, and a message for people."""

    outcome: Outcome
    job_id: str
    job: Job | None
    message: str

    def to_event(self) -> dict[str, Any]:
        """The small JSON dict the trigger yields and ``execute_complete`` reads."""
        return {
            "status": self.outcome.value,
            "job_id": self.job_id,
            "job": self.job.summary() if self.job else None,
            "message": self.message,
        }


@dataclasses.dataclass(frozen=True)
class WaitSpec:
    """What to wait for and how: the trigger serializes exactly these fields."""

    job_id: str
    targets: frozenset[JobStatus] = SUCCESS
    failures: frozenset[JobStatus] = FAILURE
    poll: PollPolicy = PollPolicy()
    retry: RetryPolicy = RetryPolicy()
    deadline: float | None = None  # epoch seconds; None waits without a bound
    not_found_grace: float = DEFAULT_NOT_FOUND_GRACE


def describe(job: Job) -> str:
    """One line about a job for the task log."""
    text = f"Job {job.id} is {job.status.value if job.status else job.raw_status}"
    if job.progress and (job.progress.total or job.progress.completed or job.progress.message):
        text += f" ({job.progress.describe()})"
    if job.error:
        text += f": {job.error}"
    return text


async def wait_for_job(
    client: JobLookup,
    spec: WaitSpec,
    *,
    log: logging.Logger | Any = None,
    check_now: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rand: Rand = random.random,
) -> WaitResult:
    """Poll ``spec.job_id`` until it reaches a target or failure status, or the deadline passes.

    :param check_now: look at once instead of after the random first delay
        (use when nobody has looked at the job yet).
    """
    logger = log or logging.getLogger(__name__)
    job_id = spec.job_id
    started = clock()
    last: Job | None = None
    failing_since: float | None = None
    consecutive_failures = 0
    unknown_logged: set[str] = set()
    delay = 0.0 if check_now else spec.poll.first_delay(rand)

    while True:
        if spec.deadline is not None:
            remaining = spec.deadline - clock()
            if remaining <= 0:
                status = last.raw_status if last else "unknown"
                return WaitResult(Outcome.TIMEOUT, job_id, last, f"Deadline reached while job {job_id} was {status}")
            delay = min(delay, remaining)
        if delay > 0:
            await sleep(delay)
        if spec.deadline is not None and clock() >= spec.deadline:
            continue  # report the timeout through the branch above
        try:
            job = await client.get_job(job_id)
        except TransientError as exc:
            now = clock()
            failing_since = now if failing_since is None else failing_since
            consecutive_failures += 1
            if spec.retry.exhausted(failing_since, now):
                return WaitResult(
                    Outcome.ERROR,
                    job_id,
                    last,
                    f"Job {job_id}: the service kept failing for {now - failing_since:.0f}s "
                    f"(transient error budget {spec.retry.budget:.0f}s); last error: {exc}",
                )
            delay = spec.retry.delay(consecutive_failures, rand, exc.retry_after)
            logger.warning("Job %s: transient error (%s); retrying in %.1fs", job_id, exc, delay)
            continue
        except JobNotFoundError as exc:
            if last is None and clock() - started < spec.not_found_grace:
                delay = spec.poll.next_delay(0.0, rand)
                logger.info("Job %s not found yet; checking again in %.1fs", job_id, delay)
                continue
            return WaitResult(Outcome.ERROR, job_id, last, str(exc))
        except JobServiceError as exc:
            return WaitResult(Outcome.ERROR, job_id, last, str(exc))

        failing_since, consecutive_failures = None, 0
        if last is None or (job.raw_status, job.progress, job.error) != (last.raw_status, last.progress, last.error):
            logger.info("%s", describe(job))
        if job.status is None and job.raw_status not in unknown_logged:
            unknown_logged.add(job.raw_status)
            logger.warning("Job %s has status %r, which we do not know; still waiting", job_id, job.raw_status)
        last = job

        match verdict(job.status, spec.targets, spec.failures):
            case WaitVerdict.DONE:
                return WaitResult(Outcome.SUCCESS, job_id, job, describe(job))
            case WaitVerdict.FAILED:
                return WaitResult(Outcome.FAILED, job_id, job, describe(job))
        born = job.started_at or job.created_at
        age = max(0.0, clock() - born.timestamp()) if born else clock() - started
        delay = spec.poll.next_delay(age, rand)
        logger.debug("Job %s still %s; next check in %.1fs", job_id, job.raw_status, delay)
