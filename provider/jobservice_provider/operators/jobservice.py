"""SubmitAndWaitOperator and CancelJobOperator."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowTaskTimeout

from jobservice_provider._task import check_event, deadline_for, default_deferrable, remaining
from jobservice_provider.core.errors import JobServiceError
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.status import FAILURE, TERMINAL, JobStatus
from jobservice_provider.core.wait import Outcome, WaitResult, WaitSpec, describe
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.triggers.jobservice import JobStatusTrigger

DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
# How much of the remote log the operator copies into the task log when the job ends.
REMOTE_LOG_TAIL_BYTES = 64 * 1024


class SubmitAndWaitOperator(BaseOperator):
    """Submit a job to the service on the worker, then wait for it and return its result.

    The job id is pushed to XCom (``job_id``) as soon as the job exists. While the job
    runs the task defers to :class:`JobStatusTrigger` (or, with ``deferrable=False``,
    waits on the worker with the same loop). The wait is bounded only by the task's
    ``execution_timeout``; without one it is unbounded.

    Submission carries an idempotency key derived from dag/task/run/map index, so a
    retry reattaches to the job of an earlier try; if that job failed, the retry submits
    a new one.

    :param job_type: the service's job type (templated).
    :param job_params: parameters of the job (templated). Named ``job_params`` because
        ``params`` is taken by Airflow for DAG params.
    :param meta: free-form metadata stored with the job (templated).
    :param timeout_s: the service's own run-time limit for the job.
    :param jobservice_conn_id: connection of the job service.
    :param poll_interval: seconds between status checks (default: the connection's, else 10).
    :param max_poll_interval: let checks spread out up to this many seconds as the job ages.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param wait_for_completion: when False, return the job id right after submitting.
    :param idempotency_key: override the derived key (templated).
    :param cancel_on_kill: cancel the remote job when the task is killed or times out.
    :param max_result_bytes: largest JSON result pushed to XCom; a bigger one fails clearly.
    """

    template_fields: Sequence[str] = ("job_type", "job_params", "meta", "idempotency_key")
    template_fields_renderers: ClassVar[dict[str, str]] = {"job_params": "json", "meta": "json"}
    ui_color = "#bfe3ff"

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
        cancel_on_kill: bool = True,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
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
        self.cancel_on_kill = cancel_on_kill
        self.max_result_bytes = max_result_bytes
        self.job_id: str | None = None

    @cached_property
    def hook(self) -> JobServiceHook:
        return JobServiceHook(self.jobservice_conn_id)

    def _poll_policy(self) -> PollPolicy:
        return PollPolicy(interval=self.poll_interval or self.hook.config.poll_interval, max_interval=self.max_poll_interval)

    def _submit(self, context: Context) -> Job:
        ti = context["ti"]
        key = self.idempotency_key or f"airflow:{ti.dag_id}:{ti.task_id}:{ti.run_id}:{ti.map_index}"
        submit = functools.partial(
            self.hook.submit, self.job_type, self.job_params, meta=self.meta or None, timeout_s=self.timeout_s
        )
        job = submit(idempotency_key=key)
        if job.status in FAILURE:
            # The key led us to the job of an earlier try, and that job failed: a retry
            # means "run it again", so submit a fresh job under a key of this try.
            self.log.info("Job %s of an earlier try ended %s; submitting a new job", job.id, job.raw_status)
            job = submit(idempotency_key=f"{key}:try{ti.try_number}")
        return job

    def execute(self, context: Context) -> Any:
        job = self._submit(context)
        self.job_id = job.id
        context["ti"].xcom_push(key="job_id", value=job.id)
        self.log.info("Submitted %s job %s (%s)", self.job_type, job.id, job.raw_status)
        if not self.wait_for_completion:
            return job.id

        deadline = deadline_for(context, self.execution_timeout)
        spec = WaitSpec(
            job_id=job.id,
            poll=self._poll_policy(),
            retry=RetryPolicy(budget=self.hook.config.transient_error_budget),
            deadline=deadline,
        )
        if self.deferrable:
            job = self.hook.get_job(job.id)
            if job.status not in TERMINAL:
                self.log.info("Job %s is %s; deferring until it finishes", job.id, job.raw_status)
                self.defer(
                    trigger=JobStatusTrigger(
                        job_id=job.id,
                        jobservice_conn_id=self.jobservice_conn_id,
                        poll_policy=spec.poll.to_dict(),
                        retry_policy=spec.retry.to_dict(),
                        deadline=deadline,
                    ),
                    method_name="execute_complete",
                    timeout=remaining(deadline),
                )
            outcome = Outcome.SUCCESS if job.status is JobStatus.SUCCEEDED else Outcome.FAILED
            event = WaitResult(outcome, job.id, job, describe(job)).to_event()
        else:
            event = self.hook.wait_for_job(spec, check_now=True).to_event()
        return self._finish(event)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        return self._finish(check_event(event))

    def _finish(self, event: dict[str, Any]) -> Any:
        """End the task from a wait's outcome: the one path for deferred and worker waits."""
        job_id = self.job_id = event["job_id"]
        self._copy_remote_log(job_id)
        match event["status"]:
            case Outcome.SUCCESS.value:
                self.log.info("%s", event["message"])
                return self._result(job_id)
            case Outcome.TIMEOUT.value:
                if self.cancel_on_kill:
                    self._cancel(job_id, "the task's execution_timeout was reached")
                raise AirflowTaskTimeout(f"execution_timeout {self.execution_timeout} reached: {event['message']}")
        raise AirflowException(event["message"])

    def _result(self, job_id: str) -> Any:
        result = self.hook.get_result(job_id)
        size = len(json.dumps(result).encode())
        if size > self.max_result_bytes:
            raise AirflowException(
                f"Job {job_id} succeeded, but its result is {size} bytes, over max_result_bytes="
                f"{self.max_result_bytes}; fetch it from the service instead (the job id is in XCom 'job_id') "
                "or raise max_result_bytes"
            )
        return result

    def _copy_remote_log(self, job_id: str) -> None:
        """Put the end of the job's remote log into the task log; a failure here never fails the task."""
        try:
            chunk = self.hook.get_logs(job_id, 0)
            offset = chunk.next_offset
            if offset > REMOTE_LOG_TAIL_BYTES:
                chunk = self.hook.get_logs(job_id, offset - REMOTE_LOG_TAIL_BYTES)
        except JobServiceError as exc:
            self.log.warning("Could not fetch the log of job %s: %s", job_id, exc)
            return
        for line in chunk.data.splitlines():
            self.log.info("[job %s] %s", job_id, line)

    def _cancel(self, job_id: str, why: str) -> None:
        try:
            job = self.hook.cancel_job(job_id)
            self.log.info("Cancelled job %s because %s; it is now %s", job_id, why, job.raw_status)
        except JobServiceError as exc:
            self.log.error("Could not cancel job %s (%s): %s", job_id, why, exc)

    def on_kill(self) -> None:
        if self.job_id and self.cancel_on_kill:
            self._cancel(self.job_id, "the task was killed")


class CancelJobOperator(BaseOperator):
    """Cancel a job and wait until it is CANCELLED (or report that it had already finished).

    :param job_id: the job to cancel (templated).
    :param jobservice_conn_id: connection of the job service.
    :param poll_interval: seconds between checks while the job is CANCELLING.
    """

    template_fields: Sequence[str] = ("job_id",)

    def __init__(
        self,
        *,
        job_id: str,
        jobservice_conn_id: str = JobServiceHook.default_conn_name,
        poll_interval: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.jobservice_conn_id = jobservice_conn_id
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any]:
        hook = JobServiceHook(self.jobservice_conn_id)
        job = hook.cancel_job(self.job_id)
        if job.status not in TERMINAL:
            result = hook.wait_for_job(
                WaitSpec(
                    job_id=job.id,
                    targets=TERMINAL,
                    poll=PollPolicy(interval=self.poll_interval),
                    deadline=deadline_for(context, self.execution_timeout),
                )
            )
            if result.outcome is not Outcome.SUCCESS or result.job is None:
                raise AirflowException(f"Cancelling job {self.job_id}: {result.message}")
            job = result.job
        if job.status is JobStatus.CANCELLED:
            self.log.info("Job %s is CANCELLED", job.id)
        else:
            self.log.info("Job %s had already finished (%s); nothing to cancel", job.id, job.raw_status)
        return job.summary()
