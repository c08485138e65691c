"""SubmitAndWaitOperator and CancelJobOperator."""

from __future__ import annotations

import enum
import functools
import json
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context

from jobservice_provider import _settings as settings
from jobservice_provider._compat import NEVER_EXPIRE, AirflowException, AirflowTaskTimeout, TaskDeferralTimeout, task_state_store
from jobservice_provider._task import (
    cancel_for_task,
    check_event,
    deadline_after,
    default_deferrable,
    grace_seconds,
    job_failed,
    note_cancel_on_kill_while_deferred,
    remaining,
    stale_seconds,
)
from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.errors import (
    ConflictError,
    InvalidRequestError,
    JobNotFoundError,
    JobServiceError,
    JobStaleError,
    JobTimeoutError,
)
from jobservice_provider.core.job import Job
from jobservice_provider.core.keys import inputs_fingerprint, inputs_key, map_scoped, sendable, task_key, try_key
from jobservice_provider.core.logs import copy_log_tail
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.status import ACTIVE, FAILURE, SUCCESS, TERMINAL, JobStatus
from jobservice_provider.core.wait import DEFAULT_NOT_FOUND_GRACE, Outcome, WaitResult, WaitSpec, describe, not_found_message
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.links.jobservice import JobServiceJobLink
from jobservice_provider.triggers.jobservice import JobStatusTrigger, deadline_margin

DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
DEFAULT_LOG_TAIL_LINES = 100
# Key of the job id in Airflow's task state store; renaming it breaks reattach of in-flight retries.
STATE_KEY = "jobservice_job_id"
# Beside it: the fingerprint of the job type, params and meta that job was submitted with.
INPUTS_KEY = "jobservice_job_inputs"


class RetryStrategy(str, enum.Enum):
    """What a retry of :class:`SubmitAndWaitOperator` does with the job of an earlier try."""

    #: a live job → wait on it; a SUCCEEDED job → return its result; a FAILED/CANCELLED one → new job.
    REATTACH = "reattach"
    #: always submit a new job.
    RESUBMIT = "resubmit"


class SubmitAndWaitOperator(BaseOperator):
    """Submit a job to the service on the worker, then wait for it and return its result.

    The job id is pushed to XCom (``job_id``; not with ``do_xcom_push=False``, which pushes
    nothing) and to Airflow's task state store as soon as the job exists; where the service has
    a web page for the job, its URL goes to XCom as ``job_url`` and the task instance shows it as
    the extra link "Job Service job" (also with ``do_xcom_push=False``). While the job runs
    the task defers to :class:`JobStatusTrigger` (or, with ``deferrable=False``, waits on the
    worker with the same loop). The wait is bounded
    only by the task's ``execution_timeout``; **without one it is unbounded**.

    Submission carries an idempotency key derived from dag/task/run/map index, so a
    submit repeated after a lost answer, or by a retry after a worker crash, finds the
    same job instead of starting a second one. What a retry does is set by ``retry_strategy``.

    :param job_type: the service's job type (templated).
    :param job_params: parameters of the job (templated). Named ``job_params`` because
        ``params`` is taken by Airflow for DAG params.
    :param meta: free-form metadata stored with the job (templated).
    :param timeout_s: the service's own run-time limit for the job.
    :param jobservice_conn_id: connection of the job service (templated).
    :param poll_interval: seconds between status checks (default: the connection's, else 10).
    :param max_poll_interval: let checks spread out up to this many seconds as the job ages.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param wait_for_completion: when False, return the job id right after submitting.
    :param idempotency_key: override the derived key (templated). In a mapped task it is scoped
        by the map index (``<key>:map<index>``) unless it varies with it already (the key is
        expanded itself, or its template uses ``map_index``).
    :param retry_strategy: :class:`RetryStrategy` (default ``REATTACH``).
    :param cancel_on_kill: cancel the remote job when the task is killed, marked or cleared.
    :param cancel_on_timeout: cancel the remote job when ``execution_timeout`` ends the wait.
    :param stream_logs: copy new remote log lines into the task log while waiting.
    :param log_tail_lines: on completion, copy at most this many remaining remote log lines.
    :param max_result_bytes: largest JSON result pushed to XCom; a bigger one fails clearly.
    :param stale_after: a timedelta (or seconds): a RUNNING job whose record (status, version,
        progress, ``updated_at``) has not changed for that long ends the wait as stale, handled
        like a timeout (cancelled with ``cancel_on_timeout``, then ``AirflowTaskTimeout``).
    :param not_found_grace: seconds (or a timedelta) a job id the service does not know yet is
        waited for (default 60): right after submit, and when a retry reattaches to the job an
        earlier try stored; then the task fails naming the id.
    """

    template_fields: Sequence[str] = ("job_type", "job_params", "meta", "idempotency_key", "jobservice_conn_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"job_params": "json", "meta": "json"}
    ui_color = "#bfe3ff"
    operator_extra_links = (JobServiceJobLink(),)

    def __init__(
        self,
        *,
        job_type: str,
        job_params: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        jobservice_conn_id: str = JobServiceHook.default_conn_name,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        deferrable: bool | None = None,
        wait_for_completion: bool = True,
        idempotency_key: str | None = None,
        retry_strategy: RetryStrategy | str = RetryStrategy.REATTACH,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        stream_logs: bool = True,
        log_tail_lines: int = DEFAULT_LOG_TAIL_LINES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        not_found_grace: float | timedelta = DEFAULT_NOT_FOUND_GRACE,
        stale_after: timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_type = job_type
        self.job_params = job_params or {}
        self.meta = meta or {}
        self.timeout_s = timeout_s
        self.jobservice_conn_id = jobservice_conn_id
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.wait_for_completion = wait_for_completion
        self.idempotency_key = idempotency_key
        self._key_template = idempotency_key  # before rendering: does it use the map index?
        try:
            self.retry_strategy = RetryStrategy(str(getattr(retry_strategy, "value", retry_strategy)).lower())
        except ValueError:
            allowed = ", ".join(s.name for s in RetryStrategy)
            raise ValueError(f"retry_strategy must be one of {allowed}, got {retry_strategy!r}") from None
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self.stream_logs = stream_logs
        self.log_tail_lines = log_tail_lines
        self.max_result_bytes = max_result_bytes
        self.not_found_grace = grace_seconds(not_found_grace)
        self.stale_after = stale_seconds(stale_after)
        self.job_id: str | None = None
        #: the job's page in the service's web UI, when it has one (what the extra link shows).
        self.job_url: str | None = None
        self._job_cancelled = False
        # Set when this try ran out of time: Airflow calls on_kill after a timeout too, and that
        # call is the timeout's (cancel_on_timeout), not a kill's (cancel_on_kill).
        self._timed_out = False
        self._deadline: float | None = None  # of this try's execution_timeout, epoch seconds
        self._inputs = ""  # fingerprint of job type, params and meta (set when the job starts)

    @cached_property
    def hook(self) -> JobServiceHook:
        return JobServiceHook(self.jobservice_conn_id)

    # -- submit or reattach ----------------------------------------------------------------
    def _base_key(self, ti: Any) -> str:
        """The key of this task instance's first try, before shortening."""
        if not self.idempotency_key:
            return task_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        key = str(self.idempotency_key)
        if ti.map_index >= 0 and not self._key_varies_with_map_index():
            return map_scoped(key, ti.map_index)
        return key

    def _key_varies_with_map_index(self) -> bool:
        """Whether a custom key is already one per map index: it is expanded itself, or its
        template uses the map index. When that cannot be told, it is taken not to vary (so it
        gets scoped: harmless for a key that varies, and it never shares one job between indexes)."""
        if "map_index" in str(self._key_template or ""):
            return True
        try:
            mapped = self.dag.task_dict.get(self.task_id)
            expand_input = getattr(mapped, "expand_input", None)
            value = getattr(expand_input, "value", None)
            if isinstance(value, Mapping):  # .expand(idempotency_key=[...])
                return "idempotency_key" in value
            if isinstance(value, list | tuple):  # .expand_kwargs([{...}, ...]) given literally
                return any(isinstance(kwargs, Mapping) and "idempotency_key" in kwargs for kwargs in value)
        except Exception:
            return False
        return False

    def _submit(self, key: str) -> Job:
        """Submit this task's job under ``key`` (as sent: shortened if long)."""
        try:
            job = SubmitRequest(
                self.job_type, self.job_params, idempotency_key=key, meta=self.meta or None, timeout_s=self.timeout_s
            )
            return self.hook.submit(job, deadline=self._deadline)
        except InvalidRequestError as exc:
            if str(exc.problem.get("header", "")).lower() == "idempotency-key":
                detail = exc.problem.get("detail") or exc.message
                raise AirflowException(
                    f"The service rejected the idempotency key {key!r} ({len(key)} characters): {detail}. "
                    "Set idempotency_key= to a key it accepts"
                ) from exc
            if exc.status == 400:
                raise AirflowException(f"{exc} (sent with idempotency key {key!r}, {len(key)} characters)") from exc
            raise

    def _start_job(self, context: Context) -> Job:
        """Reattach to the job of an earlier try or submit one; logs the decision in one line."""
        ti = context["ti"]
        base = self._base_key(ti)
        base_key, retry_key = sendable(base), sendable(try_key(base, ti.try_number))
        inputs = self._inputs = inputs_fingerprint(self.job_type, self.job_params, self.meta)
        store = task_state_store(context)
        stored = store.get(STATE_KEY) if store is not None else None
        stored_id = str(stored) if stored else None
        stored_inputs = store.get(INPUTS_KEY) if stored_id and store is not None else None
        what = f"Try {ti.try_number}, retry_strategy {self.retry_strategy.name}"

        if self.retry_strategy is RetryStrategy.RESUBMIT:
            job = self._submit(base_key if ti.try_number <= 1 else retry_key)
            self.log.info("%s: submitted job %s", what, job.id)
            return job
        if stored_id and stored_inputs and stored_inputs != inputs:
            try:
                changed_from: Job | None = self.hook.get_job(stored_id, deadline=self._deadline)
            except JobNotFoundError:
                changed_from = None
            return self._submit_changed_inputs(what, base, retry_key, stored_id, changed_from)
        if stored_id:
            earlier = self._stored_job(stored_id)
            if earlier.status not in FAILURE:
                verb = "returning the result of" if earlier.status in SUCCESS else "reattaching to"
                self.log.info("%s: %s job %s of an earlier try (%s)", what, verb, earlier.id, earlier.raw_status)
                return earlier
            if live := self._live_job_of_earlier_tries(base, ti.try_number):
                self.log.info(
                    "%s: job %s of an earlier try ended %s, but job %s of a later try is %s (found by its key); "
                    "reattaching to it",
                    what,
                    stored_id,
                    earlier.raw_status,
                    live.id,
                    live.raw_status,
                )
                return live
            job = self._submit(retry_key)
            self.log.info(
                "%s: job %s of an earlier try ended %s; submitted new job %s", what, stored_id, earlier.raw_status, job.id
            )
            return job
        # Nothing stored (first try, Airflow 3.2, or a crash before the id was stored): the
        # service's idempotency key finds a job submitted under the same key if there is one.
        try:
            job = self._submit(base_key)
        except ConflictError:
            # The key's job was submitted with other inputs: a clear or retry after job_params
            # (or type, meta) changed, without a task state store to tell.
            return self._submit_changed_inputs(what, base, retry_key, None, None)
        if job.status in FAILURE:
            earlier_id, ended_as = job.id, job.raw_status
            if live := self._live_job_of_earlier_tries(base, ti.try_number):
                self.log.info(
                    "%s: job %s under this task's key ended %s, but job %s of a later try is %s (found by its key); "
                    "reattaching to it",
                    what,
                    earlier_id,
                    ended_as,
                    live.id,
                    live.raw_status,
                )
                return live
            job = self._submit(retry_key)
            self.log.info("%s: job %s under this task's key ended %s; submitted new job %s", what, earlier_id, ended_as, job.id)
        else:
            self.log.info("%s: submitted job %s (%s)", what, job.id, job.raw_status)
        return job

    def _live_job_of_earlier_tries(self, base: str, try_number: int) -> Job | None:
        """A QUEUED or RUNNING job that an earlier try of this task instance submitted under its
        own key: the try's worker died before the job id was stored (or there is no task state
        store, as on Airflow 3.2). Looked for before a retry submits, so a task instance never has
        two live jobs. None when there is none, or when the service cannot list jobs by status."""
        if try_number <= 1:
            return None
        keys = {sendable(base), *(sendable(try_key(base, n)) for n in range(1, try_number))}
        keys.add(sendable(inputs_key(base, self._inputs)))
        try:
            live = [
                job
                for job in self.hook.list_jobs(
                    ListQuery(status=(JobStatus.QUEUED.value, JobStatus.RUNNING.value), job_type=self.job_type),
                    deadline=self._deadline,
                )
                if job.key in keys and job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
            ]
        except JobServiceError as exc:
            self.log.warning("Could not look for a live job of an earlier try (%s); submitting a new one", exc)
            return None
        if not live:
            return None
        return max(live, key=lambda job: (job.created_at.timestamp() if job.created_at else 0.0, job.id))

    def _submit_changed_inputs(self, what: str, base: str, retry_key: str, earlier_id: str | None, earlier: Job | None) -> Job:
        """The inputs differ from those of the earlier job: never reuse its result. Submit under a
        key of these inputs (a retry with them finds the job again); a live earlier job is
        cancelled, since nothing will use what it computes."""
        job = self._submit(sendable(inputs_key(base, self._inputs)))
        if job.status in FAILURE:  # these inputs ran before and failed: a fresh job for this try
            job = self._submit(retry_key)
        if earlier_id is None:
            self.log.info(
                "%s: job type, params or meta changed since the job under this task's key was submitted; submitted new job %s",
                what,
                job.id,
            )
            return job
        state = earlier.raw_status if earlier else "unknown to the service"
        if earlier is not None and earlier.status in ACTIVE and earlier.id != job.id:
            cancel_for_task(self.hook, earlier.id, "the task's inputs changed", self.log)
            state += ", now cancelled"
        self.log.info(
            "%s: job type, params or meta changed since job %s of an earlier try (%s); submitted new job %s",
            what,
            earlier_id,
            state,
            job.id,
        )
        return job

    def _stored_job(self, job_id: str) -> Job:
        """The job an earlier try stored, waited for up to ``not_found_grace`` if the service does
        not show it yet; then the task fails rather than start a second job beside it."""
        until = time.time() + self.not_found_grace
        logged = False
        while True:
            try:
                return self.hook.get_job(job_id, deadline=self._deadline)
            except JobNotFoundError as exc:
                left = until - time.time()
                if left <= 0:
                    raise AirflowException(
                        f"{not_found_message(job_id, self.not_found_grace)}. An earlier try of this task stored it, so "
                        "no new job is submitted in its place (it could run beside the one the service does not show); "
                        "use retry_strategy=RESUBMIT to start a new job regardless"
                    ) from exc
                if not logged:
                    self.log.info(
                        "Job %s of an earlier try not found yet; waiting up to not_found_grace=%gs for it",
                        job_id,
                        self.not_found_grace,
                    )
                    logged = True
                time.sleep(min(left, self.poll_interval or self.hook.config.poll_interval))

    # -- execute ---------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        try:
            return self._execute(context)
        except AirflowTaskTimeout:
            self._timed_out = True  # Airflow's own execution_timeout fired on the worker
            raise

    def _execute(self, context: Context) -> Any:
        # From now, as Airflow's own execution_timeout alarm counts (not from start_date).
        self._deadline = deadline_after(self.execution_timeout)
        job = self._start_job(context)
        self.job_id = job.id
        self.job_url = self.hook.job_url(job)
        if self.job_url:
            self.log.info("Job %s: %s", job.id, self.job_url)
        if self.do_xcom_push:
            context["ti"].xcom_push(key="job_id", value=job.id)
            if self.job_url:
                context["ti"].xcom_push(key="job_url", value=self.job_url)
        if (store := task_state_store(context)) is not None:
            store.set(STATE_KEY, job.id, retention=NEVER_EXPIRE)
            if self._inputs:
                store.set(INPUTS_KEY, self._inputs, retention=NEVER_EXPIRE)
        if not self.wait_for_completion:
            return job.id

        deadline = self._deadline
        spec = WaitSpec(
            job_id=job.id,
            poll=PollPolicy(interval=self.poll_interval or self.hook.config.poll_interval, max_interval=self.max_poll_interval),
            retry=RetryPolicy(budget=self.hook.config.transient_error_budget),
            deadline=deadline,
            not_found_grace=self.not_found_grace,
            stale_after=self.stale_after,
            follow_logs=self.stream_logs,
        )
        if job.status in TERMINAL:
            outcome = Outcome.SUCCESS if job.status is JobStatus.SUCCEEDED else Outcome.FAILED
            return self._finish(WaitResult(outcome, job.id, job, describe(job)).to_event())
        if not self.deferrable:
            return self._finish(self.hook.wait_for_job(spec, check_now=True).to_event())
        self.log.info("%s; deferring until it finishes", describe(job))
        note_cancel_on_kill_while_deferred(self.cancel_on_kill, job.id, self.log)
        self.defer(
            trigger=JobStatusTrigger(
                job_id=job.id,
                jobservice_conn_id=self.jobservice_conn_id,
                poll_policy=spec.poll.to_dict(),
                retry_policy=spec.retry.to_dict(),
                deadline=deadline,
                deadline_margin=deadline_margin(self.execution_timeout.total_seconds() if self.execution_timeout else None),
                not_found_grace=self.not_found_grace,
                stale_after=self.stale_after,
                cancel_on_kill=self.cancel_on_kill,
                follow_logs=self.stream_logs,
            ),
            method_name="execute_complete",
            timeout=remaining(deadline),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        # The wait was bounded by the trigger; what execute_complete does (result, cancel, log
        # tail) gets execution_timeout afresh, as Airflow's alarm does for a resumed task.
        self._deadline = deadline_after(self.execution_timeout)
        event = check_event(event)
        # A new process: the link Airflow stores after this part comes from the event.
        self.job_url = event.get("job_url") or self.job_url
        try:
            return self._finish(event)
        except AirflowTaskTimeout:
            self._timed_out = True
            raise

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout as exc:
            # Airflow's own deferral timeout (the backstop) ended the wait before the trigger
            # reported the deadline: the same timeout, so the same cancel_on_timeout.
            self._timed_out = True
            self.job_id = self.job_id or _stored_job_id(context, self.task_id)
            if self.job_id and self.cancel_on_timeout:
                cancel_for_task(self.hook, self.job_id, "execution_timeout was reached", self.log)
                self._job_cancelled = True
            raise AirflowTaskTimeout(f"execution_timeout ({self.execution_timeout}) reached: {exc}") from exc

    def _finish(self, event: dict[str, Any]) -> Any:
        """End the task from a wait's outcome: the one path for deferred and worker waits."""
        job_id = self.job_id = event["job_id"]
        self._copy_log_tail(job_id, int(event.get("log_offset") or 0))
        match event["status"]:
            case Outcome.SUCCESS.value:
                self.log.info("%s", event["message"])
                return self._result(job_id)
            case Outcome.TIMEOUT.value:
                self._timed_out = True
                if self.cancel_on_timeout:
                    cancel_for_task(self.hook, job_id, "execution_timeout was reached", self.log)
                    self._job_cancelled = True  # Airflow calls on_kill after a task timeout, too
                last = (event.get("job") or {}).get("status")
                raise AirflowTaskTimeout(
                    f"execution_timeout ({self.execution_timeout}) reached: {event['message']}"
                ) from JobTimeoutError(job_id, last, event["message"])
            case Outcome.STALE.value:
                self._timed_out = True  # a timeout of its own: the on_kill that follows is the timeout's
                if self.cancel_on_timeout:
                    cancel_for_task(self.hook, job_id, "it is stale", self.log)
                    self._job_cancelled = True
                raise AirflowTaskTimeout(event["message"]) from JobStaleError(
                    job_id, (event.get("job") or {}).get("status"), event["message"]
                )
            case Outcome.FAILED.value:
                raise job_failed(event["message"], event.get("job"))
        raise AirflowException(event["message"])

    def _result(self, job_id: str) -> Any:
        # Retried on transient errors like every read: a job that did its work must not fail
        # the task because one fetch of its result met a 503.
        result = self.hook.get_result(job_id, deadline=self._deadline)
        size = len(json.dumps(result).encode())
        if size > self.max_result_bytes:
            raise AirflowException(
                f"Job {job_id} succeeded, but its result is {size} bytes, over max_result_bytes="
                f"{self.max_result_bytes}; fetch it from the service instead (the job id is in XCom 'job_id') "
                "or raise max_result_bytes"
            )
        return result

    def _copy_log_tail(self, job_id: str, offset: int) -> None:
        """Copy the remote log lines not yet in the task log (at most ``log_tail_lines``).

        A failure here never fails the task: the job's outcome is what counts.
        """
        # The tail is a courtesy: a service that fails to serve it delays the task by at most
        # [jobservice] log_tail_timeout, never by the whole transient budget.
        patience = time.time() + settings.seconds("log_tail_timeout")
        deadline = patience if self._deadline is None else min(patience, self._deadline)
        copy_log_tail(
            functools.partial(self.hook.get_logs, deadline=deadline),
            job_id,
            offset,
            self.log_tail_lines,
            self.log,
            settle=self.hook.log_settle,
            clock=time.time,
            deadline=deadline,
        )

    def on_kill(self) -> None:
        """Airflow calls this when the task is killed on the worker *and* after a timeout; each
        follows its own switch (``cancel_on_kill``, ``cancel_on_timeout``)."""
        if not self.job_id or self._job_cancelled:
            return
        timed_out = self._timed_out or (self._deadline is not None and time.time() >= self._deadline)
        if timed_out and not self.cancel_on_timeout:
            self.log.info("Task timed out; job %s keeps running (cancel_on_timeout is off)", self.job_id)
        elif not timed_out and not self.cancel_on_kill:
            self.log.info("Task killed; job %s keeps running (cancel_on_kill is off)", self.job_id)
        else:
            why = "execution_timeout was reached" if timed_out else "the task was killed"
            cancel_for_task(self.hook, self.job_id, why, self.log)
            self._job_cancelled = True


def _stored_job_id(context: Context, task_id: str) -> str | None:
    """The job id an earlier part of this try stored (task state store, else XCom)."""
    store = task_state_store(context)
    stored = store.get(STATE_KEY) if store is not None else None
    if stored:
        return str(stored)
    ti = context.get("ti")
    pull = getattr(ti, "xcom_pull", None)
    if pull is None:
        return None
    try:
        value = pull(task_ids=task_id, key="job_id", map_indexes=getattr(ti, "map_index", -1))
    except Exception:  # an unreachable XCom backend must not hide the timeout being raised
        return None
    return str(value) if value else None


class CancelJobOperator(BaseOperator):
    """Cancel a job and wait until it is CANCELLED (or report that it had already finished).

    :param job_id: the job to cancel (templated).
    :param jobservice_conn_id: connection of the job service (templated).
    """

    template_fields: Sequence[str] = ("job_id", "jobservice_conn_id")

    def __init__(self, *, job_id: str, jobservice_conn_id: str = JobServiceHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.jobservice_conn_id = jobservice_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        hook = JobServiceHook(self.jobservice_conn_id)
        try:
            result = hook.cancel_and_wait(self.job_id, deadline=deadline_after(self.execution_timeout))
        except JobServiceError as exc:
            raise AirflowException(f"Could not cancel job {self.job_id}: {exc}") from exc
        job = result.job
        if result.outcome is not Outcome.SUCCESS or job is None:
            raise AirflowException(f"Cancelling job {self.job_id}: {result.message}")
        if job.status is JobStatus.CANCELLED:
            self.log.info("Job %s is CANCELLED", job.id)
        elif job.status in ACTIVE:
            raise AirflowException(f"Job {job.id} is still {job.raw_status} after the cancel request")
        else:
            self.log.info("Job %s had already finished (%s); nothing to cancel", job.id, job.raw_status)
        return job.summary()
