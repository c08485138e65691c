"""The one aiohttp client that executes every call to a job service.

The sync hook, the async hook and the trigger all go through this class; the
dialect decides what each call looks like on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from jobservice_provider import __version__
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import LogChunk, NativeDialect, get_dialect
from jobservice_provider.core.errors import ConfigurationError, PermanentError, TransientError
from jobservice_provider.core.http import HttpRequest, HttpResponse
from jobservice_provider.core.job import Job

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
USER_AGENT = f"airflow-provider-jobservice/{__version__}"


class JobServiceClient:
    """Async client for one job service.

    Use as ``async with JobServiceClient(config) as client: ...``; it owns its
    aiohttp session unless one is passed in (then the caller closes it).

    :param config: where and how to reach the service.
    :param session: an existing session to share (its connection pool is reused).
    :param connection_limit: size of the connection pool when the client makes its own session.
    """

    def __init__(
        self,
        config: ServiceConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = 16,
    ) -> None:
        self.config = config
        self.dialect: NativeDialect = get_dialect(config.dialect)
        self._session = session
        self._owns_session = session is None
        self._connection_limit = connection_limit

    async def __aenter__(self) -> JobServiceClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_option: ssl.SSLContext | bool = bool(self.config.verify_tls)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connection_limit, ssl=ssl_option),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            )
            self._owns_session = True
        return self._session

    def _headers(self, request: HttpRequest) -> dict[str, str]:
        headers = dict(self.config.extra_headers)
        headers.update(request.headers)
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return headers

    async def send(self, request: HttpRequest, *, job_id: str | None = None, timeout: float | None = None) -> HttpResponse:
        """Send one request; return a 2xx response or raise the classified error.

        Never retries: retrying is the caller's decision (only idempotent calls may be).
        """
        url = self.config.base_url + request.path
        described = f"{request.method} {url}"
        try:
            async with self._get_session().request(
                request.method,
                url,
                params=list(request.params),
                json=request.json,
                headers=self._headers(request),
                timeout=aiohttp.ClientTimeout(total=timeout or self.config.request_timeout),
                allow_redirects=False,
            ) as raw:
                body = await raw.content.read(MAX_RESPONSE_BYTES + 1)
                if len(body) > MAX_RESPONSE_BYTES:
                    raise PermanentError(f"{described}: response larger than {MAX_RESPONSE_BYTES} bytes", status=raw.status)
                if raw.content_length is not None and len(body) < raw.content_length:
                    # read(n) returns what arrived when the peer hangs up; a cut body is a reset, not data.
                    raise TransientError(f"{described}: connection closed after {len(body)} of {raw.content_length} bytes")
                response = HttpResponse(
                    status=raw.status,
                    headers={k.lower(): v for k, v in raw.headers.items()},
                    body=body,
                    url=described,
                    reason=raw.reason or "",
                )
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ConfigurationError(
                f"{described}: TLS certificate verification failed ({exc.certificate_error}); "
                "fix the certificate or set the connection extra verify_tls=false for a trusted test service"
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise ConfigurationError(f"{described}: invalid URL ({exc})") from exc
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise TransientError(f"{described}: {reason}") from exc
        if 200 <= response.status < 300:
            return response
        error = self.dialect.error_for(response, job_id=job_id)
        if isinstance(error, PermanentError):
            error.in_connection(self.config.conn_id)
        raise error

    # -- the generic operations ------------------------------------------------------------
    async def submit(
        self,
        job_type: str,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        meta: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        request = self.dialect.submit(job_type, params, idempotency_key=idempotency_key, meta=meta, timeout_s=timeout_s)
        return self.dialect.parse_job(await self.send(request))

    async def get_job(self, job_id: str, *, wait_s: float | None = None, seen: int | None = None) -> Job:
        request = self.dialect.get(job_id, wait_s=wait_s, seen=seen)
        timeout = self.config.request_timeout + (wait_s or 0)
        return self.dialect.parse_job(await self.send(request, job_id=job_id, timeout=timeout))

    async def get_jobs(self, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        """Look up many jobs, in batches the dialect allows; returns (found, missing ids)."""
        found: list[Job] = []
        missing: list[str] = []
        unique = list(dict.fromkeys(job_ids))
        for start in range(0, len(unique), self.dialect.max_batch):
            chunk = unique[start : start + self.dialect.max_batch]
            jobs, absent = self.dialect.parse_many(await self.send(self.dialect.get_many(chunk)))
            found.extend(jobs)
            missing.extend(absent)
        return found, missing

    async def list_jobs(
        self,
        *,
        status: Sequence[str] | None = None,
        job_type: str | None = None,
        created_after: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Job]:
        """Every job matching the filters, following pagination; ``limit`` caps the total."""
        cursor: str | None = None
        yielded = 0
        while True:
            page_size = min(limit - yielded, 1000) if limit else None
            request = self.dialect.list_jobs(
                status=status, job_type=job_type, created_after=created_after, limit=page_size, cursor=cursor
            )
            page = self.dialect.parse_page(await self.send(request))
            for job in page.jobs:
                yield job
                yielded += 1
                if limit and yielded >= limit:
                    return
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def cancel_job(self, job_id: str) -> Job:
        return self.dialect.parse_job(await self.send(self.dialect.cancel(job_id), job_id=job_id))

    async def get_result(self, job_id: str) -> Any:
        return self.dialect.parse_result(await self.send(self.dialect.result(job_id), job_id=job_id))

    async def get_logs(self, job_id: str, offset: int = 0) -> LogChunk:
        return self.dialect.parse_logs(await self.send(self.dialect.logs(job_id, offset), job_id=job_id))

    async def health(self) -> dict[str, Any]:
        return self.dialect.parse_health(await self.send(self.dialect.health()))
