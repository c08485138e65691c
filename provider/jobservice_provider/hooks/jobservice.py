"""JobServiceHook: the Airflow face of the core client (sync for workers, async for the triggerer)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from functools import cached_property
from typing import Any, TypeVar

from airflow.sdk import BaseHook, Connection
from asgiref.sync import async_to_sync

from jobservice_provider import _settings as settings
from jobservice_provider._compat import amask_secret, mask_secret
from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import ListQuery, LogChunk, SubmitRequest, get_dialect
from jobservice_provider.core.errors import JobNotFoundError, JobServiceError, MalformedResponseError, PermanentError
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import RetryPolicy
from jobservice_provider.core.retry import OutageLog, retry_transient
from jobservice_provider.core.sessions import shared_session
from jobservice_provider.core.wait import WaitResult, WaitSpec, cancel_and_wait, wait_for_job

T = TypeVar("T")

# The triggerer reads the same connection for every trigger of a service. One read serves
# the triggers that start within [jobservice] connection_cache_ttl seconds of it (30 by default),
# so a thousand triggers starting together do not make a thousand trips to the connection store;
# a changed connection reaches new waits at most this much later.
_shared_configs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[ServiceConfig]]]] = (
    weakref.WeakKeyDictionary()
)


async def ashared_config(conn_id: str) -> ServiceConfig:
    """The validated config of ``conn_id``, read at most once per ``[jobservice] connection_cache_ttl`` per event loop.

    A failed read is not remembered: the next caller reads again.
    """
    loop = asyncio.get_running_loop()
    cache = _shared_configs.setdefault(loop, {})
    now = loop.time()
    cached = cache.get(conn_id)
    if cached is None or cached[0] <= now:
        reading = asyncio.ensure_future(JobServiceHook(conn_id).aget_config())
        cached = cache[conn_id] = (now + settings.seconds("connection_cache_ttl"), reading)

        def forget_failure(done: asyncio.Future[ServiceConfig]) -> None:
            if (done.cancelled() or done.exception() is not None) and cache.get(conn_id) is cached:
                del cache[conn_id]

        reading.add_done_callback(forget_failure)
    # Shielded: a trigger cancelled while the read is under way must not cancel it for the others.
    return await asyncio.shield(cached[1])


def job_url_for(config: ServiceConfig, job: Job) -> str | None:
    """The URL of ``job``'s page in the service's web UI, as its dialect builds it; None when unknown."""
    return get_dialect(config.dialect, config.dialect_options).job_url(job, config.base_url)


def _config_from(conn: Connection) -> ServiceConfig:
    return ServiceConfig.from_connection_fields(
        conn_id=conn.conn_id,
        host=conn.host,
        schema=conn.schema,
        port=conn.port,
        password=conn.password,
        extra=conn.extra,
        login=conn.login,
    )


class JobServiceHook(BaseHook):
    """Talk to a remote job service described by an Airflow connection of type ``jobservice``.

    Every call exists twice over the same core coroutines: ``get_job`` for worker
    code and ``aget_job`` (etc.) for the triggerer, where the connection is fetched
    with Airflow's async API so the event loop is never blocked.

    :param jobservice_conn_id: the connection id (default ``jobservice_default``).
    """

    conn_name_attr = "jobservice_conn_id"
    default_conn_name = "jobservice_default"
    conn_type = "jobservice"
    hook_name = "Job Service"

    def __init__(self, jobservice_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobservice_conn_id = jobservice_conn_id
        self._async_config: ServiceConfig | None = None

    # -- configuration ---------------------------------------------------------------------
    @cached_property
    def config(self) -> ServiceConfig:
        """The connection, read and validated once (sync; for worker code)."""
        config = _config_from(self.get_connection(self.jobservice_conn_id))
        for _, value in config.extra_headers:
            mask_secret(value)
        return config

    async def aget_config(self) -> ServiceConfig:
        """The connection, read and validated once with Airflow's async connection API."""
        if self._async_config is None:
            try:
                config = _config_from(await self.aget_connection(self.jobservice_conn_id))
            except PermanentError as exc:
                exc.in_connection(self.jobservice_conn_id)
                raise
            for _, value in config.extra_headers:
                await amask_secret(value)
            self._async_config = config
        return self._async_config

    @asynccontextmanager
    async def async_client(self) -> AsyncIterator[JobServiceClient]:
        """A core client for async code, on the process-wide session of its service."""
        config = await self.aget_config()
        async with shared_session(config) as session, JobServiceClient(config, session=session) as client:
            yield client

    @cached_property
    def outage(self) -> OutageLog:
        """Where this hook reports transient failures: a line when they start, a summary a
        minute, a line on recovery (not one warning per retried request)."""
        return OutageLog(f"Connection {self.jobservice_conn_id!r}", self.log)

    def _retrying(
        self, config: ServiceConfig, operation: Callable[[JobServiceClient], Awaitable[T]], what: str, deadline: float | None
    ) -> Callable[[JobServiceClient], Awaitable[T]]:
        """``operation`` retried on transient errors within the connection's budget and ``deadline``."""
        policy = RetryPolicy(budget=config.transient_error_budget)

        def retried(client: JobServiceClient) -> Awaitable[T]:
            return retry_transient(lambda: operation(client), policy, what=what, deadline=deadline, outage=self.outage)

        return retried

    async def _acall(
        self, operation: Callable[[JobServiceClient], Awaitable[T]], *, retry: str | None = None, deadline: float | None = None
    ) -> T:
        """Run ``operation`` on the shared session; with ``retry`` (what it does, for messages),
        transient errors are retried (only for calls safe to repeat)."""
        async with self.async_client() as client:
            if retry is not None:
                operation = self._retrying(client.config, operation, retry, deadline)
            return await operation(client)

    def _call(
        self, operation: Callable[[JobServiceClient], Awaitable[T]], *, retry: str | None = None, deadline: float | None = None
    ) -> T:
        """The sync face of :meth:`_acall`, on a client of its own (a worker has no loop to share)."""
        try:
            config = self.config
        except PermanentError as exc:
            exc.in_connection(self.jobservice_conn_id)
            raise
        if retry is not None:
            operation = self._retrying(config, operation, retry, deadline)

        async def run() -> T:
            async with JobServiceClient(config) as client:
                return await operation(client)

        return async_to_sync(run)()

    # -- sync face (workers) ---------------------------------------------------------------
    # Every read and cancel is retried on transient errors within the connection's
    # transient_error_budget and, when given, never past ``deadline`` (epoch seconds: the
    # task's Airflow timeout). A submit is retried only with a key the service honours.
    def submit(self, job: SubmitRequest, *, deadline: float | None = None) -> Job:
        """Submit a job; with an ``idempotency_key`` a repeat returns the same job.

        The submit is retried on transient errors only when it carries a key the service
        honours; otherwise it is sent exactly once, since a lost answer may hide a created job.
        """
        return self._call(lambda c: self._submit(c, job, deadline))

    async def _submit(self, client: JobServiceClient, job: SubmitRequest, deadline: float | None) -> Job:
        if job.idempotency_key and client.dialect.supports_idempotent_submit:
            retry = RetryPolicy(budget=client.config.transient_error_budget)
            return await retry_transient(
                lambda: client.submit(job), retry, what=f"Submit {job.job_type} job", deadline=deadline, outage=self.outage
            )
        return await client.submit(job)

    def get_job(self, job_id: str, *, deadline: float | None = None) -> Job:
        return self._call(lambda c: c.get_job(job_id), retry=f"Get job {job_id}", deadline=deadline)

    def get_jobs(self, job_ids: Sequence[str], *, deadline: float | None = None) -> list[Job]:
        """Look up many jobs at once (batched); raises :class:`JobNotFoundError` naming any unknown ids."""
        return self._call(lambda c: _all_found(c, job_ids), retry="Get jobs", deadline=deadline)

    def list_jobs(self, query: ListQuery | None = None, *, deadline: float | None = None) -> Iterator[Job]:
        """Jobs matching ``query`` (default: every job), across all pages (``query.limit`` caps the total).

        A transient failure on any page restarts the listing (within the budget), so the
        jobs returned are one consistent walk, never a page twice.
        """

        async def collect(client: JobServiceClient) -> list[Job]:
            return [job async for job in client.list_jobs(query or ListQuery())]

        return iter(self._call(collect, retry="List jobs", deadline=deadline))

    def cancel_job(self, job_id: str, *, deadline: float | None = None) -> Job:
        return self._call(lambda c: c.cancel_job(job_id), retry=f"Cancel job {job_id}", deadline=deadline)

    def cancel_and_wait(self, job_id: str, deadline: float | None) -> WaitResult:
        """Cancel and wait until the job is CANCELLED or already ended (bounded by ``deadline``)."""
        return self._call(lambda c: cancel_and_wait(c, job_id, deadline=deadline, retry=self._retry_policy(c), log=self.log))

    def get_result(self, job_id: str, *, deadline: float | None = None) -> Any:
        return self._call(lambda c: c.get_result(job_id), retry=f"Get the result of job {job_id}", deadline=deadline)

    @property
    def log_settle(self) -> float:
        """Seconds a finished job's log may still grow (its dialect's ``log_settle_s``)."""
        return get_dialect(self.config.dialect, self.config.dialect_options).log_settle_s

    def get_logs(self, job_id: str, offset: int = 0, *, deadline: float | None = None) -> LogChunk:
        return self._call(lambda c: c.get_logs(job_id, offset), retry=f"Get the log of job {job_id}", deadline=deadline)

    def wait_for_job(self, spec: WaitSpec, *, check_now: bool = False) -> WaitResult:
        """Wait on a worker with the same loop and policies the trigger uses."""
        return self._call(lambda c: wait_for_job(c, spec, log=self.log, check_now=check_now, outage=self.outage))

    def test_connection(self) -> tuple[bool, str]:
        """Call the service's health endpoint once (no retries: the form waits for the answer);
        report its version or the exact failure."""
        try:
            health = self._call(lambda c: c.health())
        except (JobServiceError, ValueError) as exc:
            return False, str(exc)
        service = health.get("service", "job service")
        return (
            True,
            f"Connected to {service} {health.get('version', '?')} (API {health.get('api', '?')}) at {self.config.base_url}",
        )

    def job_url(self, job: Job) -> str | None:
        """The URL of ``job``'s page in the service's web UI (the record's link, Ray's dashboard,
        the declarative spec's ``job_url``), or None when the service has none."""
        return job_url_for(self.config, job)

    @staticmethod
    def _retry_policy(client: JobServiceClient) -> RetryPolicy:
        return RetryPolicy(budget=client.config.transient_error_budget)

    # -- async face (triggerer) ------------------------------------------------------------
    async def asubmit(self, job: SubmitRequest, *, deadline: float | None = None) -> Job:
        return await self._acall(lambda c: self._submit(c, job, deadline))

    async def aget_job(self, job_id: str, *, deadline: float | None = None) -> Job:
        return await self._acall(lambda c: c.get_job(job_id), retry=f"Get job {job_id}", deadline=deadline)

    async def aget_jobs(self, job_ids: Sequence[str], *, deadline: float | None = None) -> list[Job]:
        return await self._acall(lambda c: _all_found(c, job_ids), retry="Get jobs", deadline=deadline)

    async def acancel_job(self, job_id: str, *, deadline: float | None = None) -> Job:
        return await self._acall(lambda c: c.cancel_job(job_id), retry=f"Cancel job {job_id}", deadline=deadline)

    async def acancel_and_wait(self, job_id: str, deadline: float | None) -> WaitResult:
        return await self._acall(
            lambda c: cancel_and_wait(c, job_id, deadline=deadline, retry=self._retry_policy(c), log=self.log)
        )

    async def aget_result(self, job_id: str, *, deadline: float | None = None) -> Any:
        return await self._acall(lambda c: c.get_result(job_id), retry=f"Get the result of job {job_id}", deadline=deadline)

    async def aget_logs(self, job_id: str, offset: int = 0, *, deadline: float | None = None) -> LogChunk:
        return await self._acall(lambda c: c.get_logs(job_id, offset), retry=f"Get the log of job {job_id}", deadline=deadline)


async def _all_found(client: JobServiceClient, job_ids: Sequence[str]) -> list[Job]:
    jobs, missing = await client.get_jobs(job_ids)
    if missing:
        raise JobNotFoundError(missing[0], f"Unknown job id(s): {', '.join(missing)}")
    answered = {job.id for job in jobs}
    unanswered = [job_id for job_id in dict.fromkeys(job_ids) if job_id not in answered]
    if unanswered:
        raise MalformedResponseError(f"the batch lookup answered neither a record nor 'missing' for {', '.join(unanswered)}")
    return jobs
