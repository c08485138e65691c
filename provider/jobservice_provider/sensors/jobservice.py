"""JobCompleteSensor: wait for a job someone submitted to reach a target status."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue

from jobservice_provider._compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
)
from jobservice_provider._task import (
    StaleJobException,
    cancel_for_task,
    check_event,
    default_deferrable,
    failed_job_error,
    grace_seconds,
    note_cancel_on_kill_while_deferred,
    remaining,
    sensor_started,
    stale_seconds,
)
from jobservice_provider.core.errors import JobNotFoundError
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import PollPolicy
from jobservice_provider.core.status import FAILURE, SUCCESS, JobStatus, WaitVerdict, parse_statuses, verdict
from jobservice_provider.core.wait import DEFAULT_NOT_FOUND_GRACE, Outcome, Staleness, describe, not_found_message
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.links.jobservice import JobServiceJobLink
from jobservice_provider.triggers.jobservice import JobStatusTrigger, deadline_margin


class JobCompleteSensor(BaseSensorOperator):
    """Wait until a remote job reaches one of ``target_statuses``.

    Pokes once; then, when deferrable, waits in the triggerer for the time still
    remaining of the sensor's ``timeout``. A job that ends in a failure status fails
    the task (no retry; skipped with ``soft_fail``) with the job id, status and remote
    error in the message. Returns the job record as XCom. Where the service has a web page for
    the job, its URL goes to XCom as ``job_url`` and the task instance shows it as the extra link
    "Job Service job" (also with ``do_xcom_push=False``, which pushes nothing).

    :param job_id: the job to watch (templated).
    :param jobservice_conn_id: connection of the job service (templated).
    :param target_statuses: statuses that mean done (default ``SUCCEEDED``); one is reached when
        the job is in it or has passed it (QUEUED < RUNNING < terminal), so ``RUNNING`` is also
        reached by a job that already SUCCEEDED.
    :param failure_statuses: statuses that fail the task (default ``FAILED``, ``CANCELLED``);
        checked before the targets.
    :param poll_interval: seconds between checks (default: the connection's, else 10);
        jittered ±20%.
    :param max_poll_interval: let checks spread out up to this many seconds as the job ages.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param cancel_on_kill: cancel the watched job when this task is killed, marked or
        cleared. Off by default: a sensor may watch someone else's job.
    :param stream_logs: copy new remote log lines into the task log while deferred.
    :param stale_after: a timedelta (or seconds): a RUNNING job whose record (status, version,
        progress, ``updated_at``) has not changed for that long ends the wait with a "stale"
        error (``StaleJobException``, a ``JobStaleError``: no retry, skipped with ``soft_fail``).
    :param not_found_grace: seconds (or a timedelta) a job id the service does not know yet
        is waited for, counted from the sensor's start, before the task fails naming the id
        (default 60): the "job exists" wait, for services that show new jobs late.

    The wait is bounded only by the sensor's ``timeout``, counted as Airflow counts it (see
    the docs); there is no attempt count.
    """

    template_fields: Sequence[str] = ("job_id", "jobservice_conn_id")
    ui_color = "#d7ecfa"
    operator_extra_links = (JobServiceJobLink(),)

    def __init__(
        self,
        *,
        job_id: str,
        jobservice_conn_id: str = JobServiceHook.default_conn_name,
        target_statuses: Sequence[JobStatus | str] = tuple(SUCCESS),
        failure_statuses: Sequence[JobStatus | str] = tuple(FAILURE),
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        deferrable: bool | None = None,
        cancel_on_kill: bool = False,
        stream_logs: bool = True,
        not_found_grace: float | timedelta = DEFAULT_NOT_FOUND_GRACE,
        stale_after: timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        if poll_interval is not None:
            kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.job_id = job_id
        self.jobservice_conn_id = jobservice_conn_id
        self.target_statuses = parse_statuses(target_statuses)
        self.failure_statuses = parse_statuses(failure_statuses)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.cancel_on_kill = cancel_on_kill
        self.stream_logs = stream_logs
        self.not_found_grace = grace_seconds(not_found_grace)
        self.stale_after = stale_seconds(stale_after)
        # In poke mode one instance makes every poke, so it sees the record change; in reschedule
        # mode each poke is a new process and only the record's updated_at tells.
        self._staleness = Staleness(self.stale_after) if self.stale_after is not None else None
        self._timed_out = False  # Airflow calls on_kill after an execution_timeout, too
        self._started: float | None = None  # when the timeout's count began, epoch seconds
        #: the job's page in the service's web UI, when it has one (what the extra link shows).
        self.job_url: str | None = None

    @cached_property
    def hook(self) -> JobServiceHook:
        return JobServiceHook(self.jobservice_conn_id)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        # Retried on transient errors, but never past the sensor's own timeout.
        deadline = self._timeout_deadline(context)
        try:
            job = self.hook.get_job(self.job_id, deadline=deadline)
        except JobNotFoundError as exc:
            if self._grace_left() <= 0:
                raise AirflowException(not_found_message(self.job_id, self.not_found_grace)) from exc
            self.log.info(
                "Job %s not found yet; waiting up to not_found_grace=%gs for it to appear", self.job_id, self.not_found_grace
            )
            return False
        self.log.info("%s", describe(job))
        self._found_job_url(context, job)
        if self._staleness is not None:
            now = time.time()
            self._staleness.seen(job, now)
            stale_at = self._staleness.stale_at(job)
            if stale_at is not None and now >= stale_at:
                raise StaleJobException(self._staleness.message(job.id, now), job_id=job.id)
        match verdict(job.status, self.target_statuses, self.failure_statuses):
            case WaitVerdict.DONE:
                return PokeReturnValue(is_done=True, xcom_value=job.summary())
            case WaitVerdict.FAILED:
                raise failed_job_error(describe(job), job)
        return False

    def _found_job_url(self, context: Context, job: Job) -> None:
        """Keep the job's web page URL for the extra link; push it (once) as XCom ``job_url``."""
        url = self.hook.job_url(job)
        if url is None or url == self.job_url:
            return
        self.job_url = url
        self.log.info("Job %s: %s", job.id, url)
        if self.do_xcom_push:
            context["ti"].xcom_push(key="job_url", value=url)

    def execute(self, context: Context) -> Any:
        try:
            return self._execute(context)
        except AirflowTaskTimeout:
            self._timed_out = True
            raise

    def _execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        poked = self._first_poke(context)
        if isinstance(poked, PokeReturnValue) and poked:
            return poked.xcom_value
        deadline = self._timeout_deadline(context)
        policy = PollPolicy(interval=self.poll_interval or self.hook.config.poll_interval, max_interval=self.max_poll_interval)
        note_cancel_on_kill_while_deferred(self.cancel_on_kill, self.job_id, self.log)
        self.defer(
            trigger=JobStatusTrigger(
                job_id=self.job_id,
                jobservice_conn_id=self.jobservice_conn_id,
                target_statuses=[s.value for s in self.target_statuses],
                failure_statuses=[s.value for s in self.failure_statuses],
                poll_policy=policy.to_dict(),
                retry_policy={"budget": self.hook.config.transient_error_budget},
                deadline=deadline,
                deadline_margin=deadline_margin(self.timeout),
                not_found_grace=self.not_found_grace,
                stale_after=self.stale_after,
                not_found_until=self._started + self.not_found_grace if self._started is not None else None,
                cancel_on_kill=self.cancel_on_kill,
                follow_logs=self.stream_logs,
            ),
            method_name="execute_complete",
            timeout=remaining(deadline),
        )

    def _timeout_deadline(self, context: Context) -> float:
        """When the sensor's ``timeout`` runs out (epoch seconds), counted as Airflow counts it:
        in ``poke`` mode from this try's first poke; in ``reschedule`` mode and when deferrable
        from the first try's start (across reschedules, deferrals and, with Airflow 3.3's task
        state store, retries)."""
        if self._started is None:
            if self.deferrable or self.reschedule:
                self._started = sensor_started(context, self.retries or 0)
            else:
                self._started = time.time()
        return self._started + self.timeout

    def _grace_left(self) -> float:
        """Seconds left of ``not_found_grace``, counted from the sensor's start."""
        assert self._started is not None  # set by _timeout_deadline, called first
        return self._started + self.not_found_grace - time.time()

    def _first_poke(self, context: Context) -> PokeReturnValue | bool:
        """The poke before deferring, ending as BaseSensorOperator ends a poke in poke mode:
        a failed job or a timeout is skipped with ``soft_fail`` (or ``never_fail``)."""
        try:
            return self.poke(context)
        except (AirflowSensorTimeout, AirflowTaskTimeout, AirflowFailException) as exc:
            if self.soft_fail:
                raise AirflowSkipException("Skipping due to soft_fail is set to True.") from exc
            if getattr(self, "never_fail", False):
                raise AirflowSkipException("Skipping due to never_fail is set to True.") from exc
            raise
        except AirflowSkipException:
            raise
        except Exception as exc:
            if getattr(self, "silent_fail", False):
                self.log.error("Sensor poke failed: %s", exc)
                return False
            if getattr(self, "never_fail", False):
                raise AirflowSkipException("Skipping due to never_fail is set to True.") from exc
            raise

    def on_kill(self) -> None:
        # A sensor watches: running out of time (execution_timeout, after which Airflow calls
        # on_kill as well) never cancels the job; only a kill does, with cancel_on_kill.
        if self.cancel_on_kill and not self._timed_out:
            cancel_for_task(self.hook, self.job_id, "the task was killed", self.log)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        event = check_event(event)
        # A new process: the link Airflow stores after this part comes from the event.
        self.job_url = event.get("job_url") or self.job_url
        match event["status"]:
            case Outcome.SUCCESS.value:
                self.log.info("%s", event["message"])
                return event["job"]
            case Outcome.FAILED.value:
                raise failed_job_error(event["message"], event.get("job"))
            case Outcome.STALE.value:
                raise StaleJobException(event["message"], job_id=event["job_id"])
            case Outcome.TIMEOUT.value:
                raise AirflowSensorTimeout(f"Sensor timed out after {timedelta(seconds=self.timeout)}: {event['message']}")
        raise AirflowException(event["message"])
