"""JobStatusTrigger: waits for a remote job in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from airflow.sdk import conf
from airflow.triggers.base import BaseTrigger, TriggerEvent

from jobservice_provider.core.errors import JobServiceError
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.status import FAILURE, SUCCESS, JobStatus, parse_statuses
from jobservice_provider.core.wait import DEFAULT_NOT_FOUND_GRACE, Outcome, WaitResult, WaitSpec, wait_for_job
from jobservice_provider.core.watcher import shared_watcher
from jobservice_provider.hooks.jobservice import JobServiceHook, ashared_config, job_url_for

# The trigger reports the deadline a little before Airflow's own trigger timeout would fire,
# so the task resumes through execute_complete (which can cancel the job and raise the proper
# timeout error) instead of Airflow's generic deferral timeout: by min(2 s, 5% of the timeout),
# so a short timeout does not end noticeably early.
DEADLINE_MARGIN = 2.0
DEADLINE_MARGIN_FRACTION = 0.05


def deadline_margin(timeout_seconds: float | None) -> float:
    """How much earlier than Airflow the trigger reports a timeout of ``timeout_seconds``."""
    if timeout_seconds is None:
        return DEADLINE_MARGIN
    return max(0.0, min(DEADLINE_MARGIN, DEADLINE_MARGIN_FRACTION * timeout_seconds))


# on_kill must finish within the triggerer's [triggerer] on_kill_timeout (Airflow 3.3+, 30 s by
# default), with room left for its last log line: the timeout less min(5 s, 20%). Where the setting
# does not exist, 25 s.
DEFAULT_ON_KILL_BUDGET = 25.0
ON_KILL_MARGIN = 5.0
ON_KILL_MARGIN_FRACTION = 0.2


def on_kill_budget() -> float:
    """Seconds ``on_kill`` may spend cancelling the job, from Airflow's ``[triggerer] on_kill_timeout``."""
    raw = conf.get("triggerer", "on_kill_timeout", fallback=None)
    try:
        timeout = float(raw) if raw is not None and str(raw).strip() else None
    except ValueError:
        timeout = None  # Airflow's triggerer refuses such a value itself, at start
    if timeout is None or not timeout > 0:
        return DEFAULT_ON_KILL_BUDGET
    return timeout - min(ON_KILL_MARGIN, ON_KILL_MARGIN_FRACTION * timeout)


DEFAULT_TARGETS = tuple(sorted(status.value for status in SUCCESS))
DEFAULT_FAILURES = tuple(sorted(status.value for status in FAILURE))
Settings = tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]]
Parsed = tuple[frozenset[JobStatus], frozenset[JobStatus], PollPolicy, RetryPolicy]


def _parse_settings(targets: tuple[str, ...], failures: tuple[str, ...], poll: Any, retry: Any) -> Parsed:
    return parse_statuses(targets), parse_statuses(failures), PollPolicy.from_dict(dict(poll)), RetryPolicy.from_dict(dict(retry))


# A triggerer holds thousands of triggers, mostly with the same settings: the parsed statuses
# and policies are immutable, so triggers with equal settings share one parsed copy.
_shared_settings = functools.lru_cache(maxsize=256)(_parse_settings)


def _parsed(settings: Settings) -> Parsed:
    try:
        hash(settings)
    except TypeError:
        return _parse_settings(*settings)  # not a plain setting: parsing names the problem
    return _shared_settings(*settings)


_gc_freeze_decided = False


def _freeze_gc_if_asked() -> None:
    """``[jobservice] triggerer_gc_freeze``: once per process, put the objects alive now out of the
    cyclic collector's reach (see the option's description in get_provider_info). Off by default:
    a library must not change the whole process on its own."""
    global _gc_freeze_decided
    if _gc_freeze_decided:
        return
    _gc_freeze_decided = True
    if conf.getboolean("jobservice", "triggerer_gc_freeze", fallback=False):
        gc.freeze()


class JobStatusTrigger(BaseTrigger):
    """Poll a job until it reaches a target or terminal status, then yield one event.

    All arguments are plain JSON so the trigger survives a triggerer restart: the
    deadline is absolute (epoch seconds), never a count of polls.

    :param job_id: the remote job id.
    :param jobservice_conn_id: the connection of the service.
    :param target_statuses: statuses that end the wait successfully.
    :param failure_statuses: statuses that end the wait as a failure (any other terminal
        status also does, since the job can no longer reach a target).
    :param poll_policy: :class:`PollPolicy` as a dict.
    :param retry_policy: :class:`RetryPolicy` as a dict (transient-error backoff and budget).
    :param deadline: epoch seconds when Airflow's timeout for this wait expires, or None.
    :param deadline_margin: seconds before ``deadline`` the trigger reports the timeout (see
        :func:`deadline_margin`: at most min(2 s, 5% of the timeout); 2 s when not given).
    :param not_found_grace: seconds an unknown job id is tolerated right after submission.
    :param not_found_until: epoch seconds the grace ends, when it began before this wait (a
        sensor's first poke); by default it ends ``not_found_grace`` after the wait starts.
    :param stale_after: seconds a RUNNING job may go without any change to its record (status,
        version, progress, ``updated_at``) before the wait ends with a ``stale`` event.
    :param cancel_on_kill: cancel the job when a user kills the deferred task (mark
        failed/success, clear). Never on triggerer restart or reassignment.
    :param follow_logs: copy new remote log lines into the task log while waiting.
    :param log_offset: bytes of the remote log already copied (by an earlier wait).

    The event is ``{"status": "success"|"failed"|"timeout"|"stale"|"error", "job_id", "job",
    "message", "log_offset"}``, with ``"job_url"`` (the job's web page) where the service has one.
    """

    def __init__(
        self,
        *,
        job_id: str,
        jobservice_conn_id: str = JobServiceHook.default_conn_name,
        target_statuses: Iterable[str] = DEFAULT_TARGETS,
        failure_statuses: Iterable[str] = DEFAULT_FAILURES,
        poll_policy: dict[str, Any] | None = None,
        retry_policy: dict[str, Any] | None = None,
        deadline: float | None = None,
        deadline_margin: float = DEADLINE_MARGIN,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        not_found_until: float | None = None,
        stale_after: float | None = None,
        cancel_on_kill: bool = False,
        follow_logs: bool = False,
        log_offset: int = 0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_id = job_id
        self.jobservice_conn_id = jobservice_conn_id
        self.deadline = deadline
        self.deadline_margin = deadline_margin
        self.cancel_on_kill = cancel_on_kill
        targets, failures, poll, retry = _parsed(
            (
                tuple(target_statuses),
                tuple(failure_statuses),
                tuple(sorted((poll_policy or {}).items())),
                tuple(sorted((retry_policy or {}).items())),
            )
        )
        self.spec = WaitSpec(
            job_id=job_id,
            targets=targets,
            failures=failures,
            poll=poll,
            retry=retry,
            deadline=None if deadline is None else deadline - deadline_margin,
            not_found_grace=not_found_grace,
            not_found_until=not_found_until,
            stale_after=stale_after,
            follow_logs=follow_logs,
            log_offset=log_offset,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        spec = self.spec
        return f"{cls.__module__}.{cls.__qualname__}", {
            "job_id": self.job_id,
            "jobservice_conn_id": self.jobservice_conn_id,
            "target_statuses": sorted(s.value for s in spec.targets),
            "failure_statuses": sorted(s.value for s in spec.failures),
            "poll_policy": spec.poll.to_dict(),
            "retry_policy": spec.retry.to_dict(),
            "deadline": self.deadline,
            "deadline_margin": self.deadline_margin,
            "not_found_grace": spec.not_found_grace,
            "not_found_until": spec.not_found_until,
            "stale_after": spec.stale_after,
            "cancel_on_kill": self.cancel_on_kill,
            "follow_logs": spec.follow_logs,
            "log_offset": spec.log_offset,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        _freeze_gc_if_asked()
        url = None
        try:
            config = await ashared_config(self.jobservice_conn_id)
            async with shared_watcher(config) as watcher, watcher.subscribe(self.job_id, self.spec.retry) as subscription:
                result = await wait_for_job(
                    watcher.client, self.spec, log=self.log, lookup=subscription.check, outage=watcher.outage
                )
            url = job_url_for(config, result.job) if result.job is not None else None
        except JobServiceError as exc:
            result = WaitResult(Outcome.ERROR, self.job_id, None, str(exc), self.spec.log_offset)
        if result.outcome in (Outcome.TIMEOUT, Outcome.STALE, Outcome.ERROR):
            # (A job that ended was just logged with its status line.)
            self.log.info("Wait for job %s ended: %s: %s", self.job_id, result.outcome.value, result.message)
        event = result.to_event()
        if url:
            event["job_url"] = url
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        """Cancel the remote job: the user ended the deferred task (Airflow 3.3+ calls this only then)."""
        if not self.cancel_on_kill:
            self.log.info("Task killed; job %s keeps running (cancel_on_kill is off)", self.job_id)
            return
        deadline = time.time() + on_kill_budget()
        if self.deadline is not None:
            deadline = min(deadline, self.deadline)
        try:
            # The deadline bounds every retry and poll inside; the timeout is the backstop that
            # keeps on_kill within its budget whatever a request does.
            async with asyncio.timeout(max(0.0, deadline - time.time())):
                result = await JobServiceHook(self.jobservice_conn_id).acancel_and_wait(self.job_id, deadline)
        except TimeoutError:
            self.log.error("Task killed; job %s: no answer to the cancel before the on_kill budget ran out", self.job_id)
            return
        except JobServiceError as exc:
            self.log.error("Task killed; could not cancel job %s: %s", self.job_id, exc)
            return
        self.log.info("Task killed; cancelled job %s: %s", self.job_id, result.message)
