"""The one wait loop, used by the trigger in the triggerer and by the hook on a worker,
plus the two other calls that must ride out transient faults: submit and cancel.

Polls follow the jittered :class:`PollPolicy`; transient faults are retried for the
:class:`RetryPolicy`'s time budget of continuous failure; an absolute deadline ends
the wait; nothing counts attempts. Clock, sleep and random source are injectable so
tests step the loop exactly.
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

from jobservice_provider.core.dialects import LogChunk
from jobservice_provider.core.errors import (
    JobFailedError,
    JobNotFoundError,
    JobServiceError,
    JobStaleError,
    JobTimeoutError,
    TransientError,
)
from jobservice_provider.core.job import Job
from jobservice_provider.core.logs import LogFollower
from jobservice_provider.core.policy import PollPolicy, Rand, RetryPolicy
from jobservice_provider.core.retry import Clock, FailureStreak, OutageLog, Sleep, retry_transient
from jobservice_provider.core.schedule import Unchanged
from jobservice_provider.core.status import FAILURE, SUCCESS, TERMINAL, JobStatus, WaitVerdict, verdict

DEFAULT_NOT_FOUND_GRACE = 60.0
# A cancelled job usually stops within seconds; check it often.
CANCEL_POLL = PollPolicy(interval=1.0)
DEFAULT_RETRY = RetryPolicy()

Lookup = Callable[[float, bool, Unchanged | None], Awaitable[Job]]
_log = logging.getLogger(__name__)


class JobService(Protocol):
    """What the wait loop needs of a client (the core client, or a fake in unit tests)."""

    async def get_job(self, job_id: str) -> Job: ...

    async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> LogChunk: ...

    async def cancel_job(self, job_id: str) -> Job: ...


class Outcome(str, enum.Enum):
    """How a wait ended; also the ``status`` of the trigger's event."""

    SUCCESS = "success"  # a target status was reached
    FAILED = "failed"  # the job ended in a failure status
    TIMEOUT = "timeout"  # the deadline passed first
    STALE = "stale"  # the job stayed RUNNING with no change to its record for stale_after
    ERROR = "error"  # we could not find out (permanent error, or transient budget spent)


@dataclasses.dataclass(frozen=True)
class WaitResult:
    """The end of a wait: the outcome, the last job record seen, and a message for people.

    ``log_offset`` is how far the remote log was copied into the task log, so whoever
    prints the final tail starts there and no line appears twice.
    """

    outcome: Outcome
    job_id: str
    job: Job | None
    message: str
    log_offset: int = 0

    def raise_for_outcome(self) -> Job:
        """The job when the wait succeeded; otherwise the error that says what happened:
        :class:`JobFailedError` (with the job's real status and remote error),
        :class:`JobTimeoutError`, or :class:`JobServiceError` when we could not find out."""
        job = self.job
        if self.outcome is Outcome.SUCCESS and job is not None:
            return job
        if self.outcome is Outcome.FAILED and job is not None:
            raise JobFailedError(job.id, job.raw_status, str(job.error) if job.error else None, message=self.message)
        if self.outcome is Outcome.STALE:
            raise JobStaleError(self.job_id, job.raw_status if job else None, self.message)
        if self.outcome is Outcome.TIMEOUT:
            raise JobTimeoutError(self.job_id, job.raw_status if job else None, self.message)
        raise JobServiceError(self.message)

    def to_event(self) -> dict[str, Any]:
        """The small JSON dict the trigger yields and ``execute_complete`` reads."""
        return {
            "status": self.outcome.value,
            "job_id": self.job_id,
            "job": self.job.summary() if self.job else None,
            "message": self.message,
            "log_offset": self.log_offset,
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
    # epoch seconds the grace ends, when it began before this wait (a sensor's first poke); else
    # it ends not_found_grace after the wait starts
    not_found_until: float | None = None
    # seconds a RUNNING job may go without any change to its record before the wait ends "stale"
    stale_after: float | None = None
    follow_logs: bool = False
    log_offset: int = 0


class Staleness:
    """When a job's record last changed, to tell a job that hangs (still RUNNING, no progress)
    from one that works: its status, ``version``, ``progress`` and ``updated_at`` are compared
    from record to record. The first record counts from its ``updated_at`` when the service sends
    one (a job that hung before anyone looked is stale already), else from when it was seen.

    :param after: seconds without a change after which a RUNNING job is stale.
    """

    __slots__ = ("after", "signature", "since")

    def __init__(self, after: float) -> None:
        self.after = after
        self.signature: tuple[Any, ...] | None = None
        self.since = 0.0

    def seen(self, job: Job, now: float) -> None:
        signature = (job.raw_status, job.version, job.progress, job.updated_at)
        if signature == self.signature:
            return
        first = self.signature is None
        self.signature, self.since = signature, now
        if first and job.updated_at is not None:
            self.since = min(now, job.updated_at.timestamp())

    def stale_at(self, job: Job | None) -> float | None:
        """When ``job`` (the last record seen) goes stale; None unless it is RUNNING."""
        if job is None or job.status is not JobStatus.RUNNING or self.signature is None:
            return None
        return self.since + self.after

    def message(self, job_id: str, now: float) -> str:
        return (
            f"Job {job_id} is stale: still RUNNING with no change to its record (status, version, progress, "
            f"updated_at) for {now - self.since:.0f}s (stale_after={self.after:g}s)"
        )


def not_found_message(job_id: str, grace: float) -> str:
    """The error of a job id the service still did not know when the not-found grace ended."""
    return (
        f"Job {job_id} not found: the service did not know this id within not_found_grace={grace:g}s "
        "(check the job id and the connection, or raise not_found_grace if the service shows new jobs late)"
    )


def describe(job: Job) -> str:
    """One line about a job for the task log: ``Job j_1: RUNNING 3/10 (30%) loading shards``."""
    text = f"Job {job.id}: {job.status.value if job.status else job.raw_status}"
    progress = job.progress.describe() if job.progress else ""
    if progress:
        text += f" {progress}"
    if job.error:
        text += f" ({job.error})"
    return text


async def wait_for_job(
    client: JobService,
    spec: WaitSpec,
    *,
    log: logging.Logger | Any = None,
    check_now: bool = False,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    rand: Rand = random.random,
    lookup: Lookup | None = None,
    outage: OutageLog | None = None,
) -> WaitResult:
    """Poll ``spec.job_id`` until it reaches a target or failure status, or the deadline passes.

    :param check_now: look at once instead of after the random first delay
        (use when nobody has looked at the job yet).
    :param lookup: where status checks go instead of ``client.get_job`` after ``sleep``:
        ``lookup(delay, hold, unchanged)`` answers with the record as of ``delay`` seconds from now
        (the shared watcher, which batches the checks of many waits). With ``hold`` it may answer
        later, when the job changes, if the service would tell it of a change; the wait allows
        that unless it follows the log (which needs regular wake-ups), and bounds it by the deadline.
        With ``unchanged`` (given once the job has been seen), a check that finds the job as it
        was is followed by the next one on this wait's schedule without waking the wait, up to
        the next moment the wait must act itself (a log read, the job going stale); the deadline
        bounds that too.

    With ``spec.follow_logs``, the log is read on a schedule of its own: once the job is known to
    exist, then every ``poll.interval`` (jittered, not growing with the job's age), between
    status checks rather than with each of them, and once more when the job has ended. A status
    check is then still one lookup (one batch request for many waits through ``lookup``).
    :param outage: where transient failures are reported (default: this wait's own log, a
        line when they start, a summary a minute, a line on recovery). The triggerer passes
        one per service, so an outage is a few lines however many waits it touches.
    """
    logger = log or _log
    outage = outage or OutageLog(f"Job {spec.job_id}", logger, clock)
    job_id = spec.job_id
    started = clock()
    last: Job | None = None
    # Made when first needed: a triggerer keeps thousands of these frames alive at once.
    streak: FailureStreak | None = None
    unknown_logged: set[str] | None = None
    follower = LogFollower(client, job_id, spec.log_offset, logger) if spec.follow_logs else None
    delay = 0.0 if check_now else spec.poll.first_delay(rand)
    hold = follower is None
    log_due: float | None = None  # when the log is read next; None until the job is known to exist
    changes = Staleness(spec.stale_after) if spec.stale_after is not None else None
    checked_at = float("-inf")
    # Resolved once: on a structlog proxy (a trigger's log) every attribute read binds a new logger,
    # and this line is written (or dropped) on every check of every wait.
    debug = logger.debug
    # Most checks find the job as it was: the dialects hand back the very Job object they mapped
    # last time (it is frozen), so what depends only on the job is worked out once per change.
    ending = WaitVerdict.WAITING
    born_at: float | None = None

    def poll_delay() -> float:
        """The delay before the next status check: the poll policy's, for the job's age now."""
        age = max(0.0, clock() - born_at) if born_at is not None else clock() - started
        return spec.poll.next_delay(age, rand)

    while True:
        remaining: float | None = None
        holding = hold
        if spec.deadline is not None:
            remaining = spec.deadline - clock()
            if remaining <= 0:
                message = (
                    f"Deadline reached while job {job_id} was {last.raw_status}"
                    if last
                    else f"Deadline reached before the status of job {job_id} was seen"
                )
                return _result(Outcome.TIMEOUT, message, spec, last, follower)
        if changes is not None and (stale_at := changes.stale_at(last)) is not None:
            now = clock()
            if now < stale_at:
                remaining = stale_at - now if remaining is None else min(remaining, stale_at - now)
            elif checked_at >= stale_at:
                return _result(Outcome.STALE, changes.message(job_id, now), spec, last, follower)
            else:  # look once more, now, before calling it stale
                delay, holding = 0.0, False
        if follower is not None and log_due is not None and log_due - clock() < delay:
            # The log read comes before the next status check: do it, then wait out the rest.
            before = clock()
            until_log = log_due - before
            if remaining is not None and until_log >= remaining:
                await sleep(remaining)
                continue  # the deadline (or the time the job goes stale) comes first
            if until_log > 0:
                await sleep(until_log)
            await follower.poll(ended=False)
            log_due = clock() + spec.poll.next_delay(0.0, rand)
            delay = max(0.0, delay - (clock() - before))
            continue
        if remaining is not None and lookup is None and delay >= remaining:
            await sleep(remaining)  # the next check would come too late: report the timeout (or look)
            continue
        try:
            if lookup is not None:
                unchanged = None
                if last is not None and streak is None:  # (a streak ends with an answer the wait must see)
                    unchanged = Unchanged(last, poll_delay, _horizon(clock(), log_due, last, changes))
                if remaining is None:
                    job = await lookup(delay, holding, unchanged)
                else:
                    try:
                        async with asyncio.timeout(remaining):
                            job = await lookup(delay, holding, unchanged)
                    except TimeoutError:
                        continue  # the deadline (or the time the job goes stale) came first
            else:
                if delay > 0:
                    await sleep(delay)
                job = await client.get_job(job_id)
        except TransientError as exc:
            streak = streak or FailureStreak(spec.retry, clock, rand)
            next_delay = streak.next_delay(exc)
            if next_delay is None:
                outage.failed("status check", exc, None)
                return _result(Outcome.ERROR, streak.exhausted_message(f"Job {job_id}", exc), spec, last, follower)
            delay = next_delay
            outage.failed("status check", exc, delay)
            continue
        except JobNotFoundError as exc:
            if last is not None:  # it existed: it was deleted, not late
                return _result(Outcome.ERROR, str(exc), spec, last, follower)
            grace_end = spec.not_found_until if spec.not_found_until is not None else started + spec.not_found_grace
            grace_left = grace_end - clock()
            if grace_left <= 0:
                return _result(Outcome.ERROR, not_found_message(job_id, spec.not_found_grace), spec, last, follower)
            # The last check falls when the grace ends, so a job that never appears fails then.
            delay = min(spec.poll.next_delay(0.0, rand), grace_left)
            logger.info("Job %s not found yet; checking again in %.1fs", job_id, delay)
            continue
        except JobServiceError as exc:
            return _result(Outcome.ERROR, str(exc), spec, last, follower)

        if streak is not None:
            streak = None  # the failures are over
            outage.succeeded()
        changed = job is not last
        if changed and (
            last is None or (job.raw_status, job.progress, job.error) != (last.raw_status, last.progress, last.error)
        ):
            logger.info("%s", describe(job))
        if job.status is None and job.raw_status not in (unknown_logged or ()):
            unknown_logged = unknown_logged or set()
            unknown_logged.add(job.raw_status)
            logger.warning("Job %s has status %r, which we do not know; still waiting", job_id, job.raw_status)
        last = job
        checked_at = clock()
        if changes is not None:
            changes.seen(job, checked_at)
        if changed:
            ending = verdict(job.status, spec.targets, spec.failures)
            born = job.started_at or job.created_at
            born_at = born.timestamp() if born else None
        if follower is not None:
            if ending is not WaitVerdict.WAITING:
                await follower.poll(ended=job.status in TERMINAL)  # what the job wrote last
            elif log_due is None:
                log_due = clock()  # the job exists: its log is read from now on

        match ending:
            case WaitVerdict.DONE:
                return _result(Outcome.SUCCESS, describe(job), spec, last, follower)
            case WaitVerdict.FAILED:
                return _result(Outcome.FAILED, describe(job), spec, last, follower)
        delay = poll_delay()
        debug("Job %s still %s; next check in %.1fs", job_id, job.raw_status, delay)


def _horizon(now: float, log_due: float | None, last: Job, changes: Staleness | None) -> float | None:
    """Seconds until the wait must act whatever its job does: read the log, or call the job stale."""
    moments = [moment for moment in (log_due, changes.stale_at(last) if changes else None) if moment is not None]
    return min(moments) - now if moments else None


def _result(outcome: Outcome, message: str, spec: WaitSpec, last: Job | None, follower: LogFollower | None) -> WaitResult:
    return WaitResult(outcome, spec.job_id, last, message, follower.offset if follower else spec.log_offset)


async def cancel_and_wait(
    client: JobService,
    job_id: str,
    *,
    deadline: float | None,
    poll: PollPolicy = CANCEL_POLL,
    retry: RetryPolicy = DEFAULT_RETRY,
    log: logging.Logger | Any = None,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    rand: Rand = random.random,
) -> WaitResult:
    """Ask the service to cancel ``job_id`` and wait until it is CANCELLED or otherwise ended.

    Idempotent: cancelling a job that already ended changes nothing and reports its status.
    Bounded by ``deadline`` (the caller's Airflow timeout), never by a count.
    """
    job = await retry_transient(
        lambda: client.cancel_job(job_id),
        retry,
        what=f"Cancel job {job_id}",
        deadline=deadline,
        log=log,
        clock=clock,
        sleep=sleep,
        rand=rand,
    )
    if job.status in TERMINAL:
        return WaitResult(Outcome.SUCCESS, job_id, job, describe(job))
    spec = WaitSpec(job_id=job_id, targets=TERMINAL, failures=frozenset(), poll=poll, retry=retry, deadline=deadline)
    return await wait_for_job(client, spec, log=log, clock=clock, sleep=sleep, rand=rand)
