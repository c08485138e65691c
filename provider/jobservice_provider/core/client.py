"""The one aiohttp client that executes every call to a job service.

The sync hook, the async hook and the trigger all go through this class; the
dialect decides what each call looks like on the wire.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import (
    BatchLookup,
    Dialect,
    FollowUp,
    ListQuery,
    LogChunk,
    OffsetLogs,
    RecordLogs,
    RecordPage,
    SubmitRequest,
    Watch,
    WholeLogs,
    get_dialect,
    slice_log,
)
from jobservice_provider.core.errors import (
    AuthenticationError,
    ConfigurationError,
    JobNotFoundError,
    JobServiceError,
    MalformedResponseError,
    PermanentError,
    TransientError,
)
from jobservice_provider.core.http import HttpRequest, HttpResponse
from jobservice_provider.core.job import Job
from jobservice_provider.core.sessions import new_session, proxy_refusal, proxy_route, transport_error
from jobservice_provider.core.status import TERMINAL

log = logging.getLogger(__name__)

# Single lookups in flight at once when a dialect has no batch call, and how many ids the
# watcher hands one get_jobs call then.
LOOKUP_CONCURRENCY = 8
LOOKUPS_PER_CALL = 100
# What a 401/403 asks the user to check, per auth_type ({conn_id} is filled in by the error).
AUTH_HINTS = {
    "bearer": "auth_type 'bearer': check the API token (password) of connection {conn_id!r} and what it may do",
    "basic": "auth_type 'basic': check the login and password of connection {conn_id!r} and what they may do",
    "header": "auth_type 'header': check the password of connection {conn_id!r}, sent in header {header}",
    "none": "auth_type 'none' sends no credentials, but the service wants them: set auth_type and the password "
    "of connection {conn_id!r}",
}


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
        self.dialect: Dialect = get_dialect(config.dialect, config.dialect_options)
        # The optional capabilities, checked once: None where the dialect lacks one.
        self.batch_lookup: BatchLookup | None = self.dialect if isinstance(self.dialect, BatchLookup) else None
        self.job_watch: Watch | None = self.dialect if isinstance(self.dialect, Watch) else None
        self.offset_logs: OffsetLogs | None = self.dialect if isinstance(self.dialect, OffsetLogs) else None
        self.whole_logs: WholeLogs | None = self.dialect if isinstance(self.dialect, WholeLogs) else None
        self.record_logs: RecordLogs | None = self.dialect if isinstance(self.dialect, RecordLogs) else None
        self._session = session
        self._owns_session = session is None
        self._connection_limit = connection_limit

    @property
    def max_batch(self) -> int:
        """Job ids one :meth:`get_jobs` call should take (one request with a batch lookup)."""
        return self.batch_lookup.max_batch if self.batch_lookup is not None else LOOKUPS_PER_CALL

    @property
    def max_watch(self) -> int:
        """Job ids one :meth:`watch` may list; 0 when the dialect cannot watch."""
        return self.job_watch.max_watch if self.job_watch is not None else 0

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
            self._session = new_session(self.config, self._connection_limit)
            self._owns_session = True
        return self._session

    def _headers(self, request: HttpRequest) -> dict[str, str]:
        headers = dict(self.config.extra_headers)
        headers.update(request.headers)
        headers.update(self.config.auth_headers())
        return headers

    async def send(self, request: HttpRequest, *, job_id: str | None = None, timeout: float | None = None) -> HttpResponse:
        """Send one request; return a 2xx response or raise the classified error.

        Never retries: retrying is the caller's decision (only idempotent calls may be).
        """
        response = await self._exchange(request, timeout=timeout)
        if 200 <= response.status < 300:
            return response
        raise self._error_for(response, job_id=job_id)

    def _error_for(self, response: HttpResponse, *, job_id: str | None = None) -> JobServiceError:
        error = self.dialect.error_for(response, job_id=job_id)
        if isinstance(error, AuthenticationError):
            error.hint = AUTH_HINTS[self.config.auth_type].replace("{header}", str(self.config.auth_header))
        if isinstance(error, PermanentError):
            error.in_connection(self.config.conn_id)
        return error

    async def _exchange(self, request: HttpRequest, *, timeout: float | None = None) -> HttpResponse:
        """One round trip; any HTTP status comes back as a response, transport failures raise."""
        url = self.config.base_url + request.path
        described = f"{request.method} {url}"
        route = proxy_route(self.config)
        # Per request: aiohttp's session-wide proxy takes credentials only through a deprecated argument.
        routing = route.request_kwargs(url, self._headers(request)) if route else {"headers": self._headers(request)}
        try:
            async with self._get_session().request(
                request.method,
                url,
                params=list(request.params),
                json=request.json,
                timeout=aiohttp.ClientTimeout(total=timeout or self.config.request_timeout),
                # Never followed: a redirect would carry the bearer token to wherever Location points.
                allow_redirects=False,
                **routing,
            ) as raw:
                body = await _read_body(raw, self.config.max_response_bytes, described)
                response = HttpResponse(
                    status=raw.status,
                    headers={k.lower(): v for k, v in raw.headers.items()},
                    body=body,
                    url=described,
                    reason=raw.reason or "",
                )
        except aiohttp.InvalidURL as exc:
            raise ConfigurationError(f"{described}: invalid URL ({exc})").in_connection(self.config.conn_id) from exc
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            # TLS and proxy failures read differently (and some are permanent); sessions knows them.
            error = transport_error(self.config, described, exc)
            if isinstance(error, PermanentError):
                error.in_connection(self.config.conn_id)
            raise error from exc
        if response.status == 407:  # from a proxy, not the service: a dialect would misread it
            raise proxy_refusal(self.config, described, response.reason).in_connection(self.config.conn_id)
        return response

    async def _follow(self, answer: Any) -> Any:
        """Send the follow-up requests a dialect's answer asks for, until there is a plain answer."""
        while isinstance(answer, FollowUp):
            answer = answer.parse(await self.send(answer.request, job_id=answer.job_id))
        return answer

    # -- the generic operations ------------------------------------------------------------
    async def submit(self, job: SubmitRequest) -> Job:
        response = await self._exchange(self.dialect.submit(job))
        if 200 <= response.status < 300:
            created: Job = await self._follow(self.dialect.parse_submit(response))
            return created
        key = job.idempotency_key
        existing = self.dialect.reattach(response, key) if key else None
        if existing is None:
            raise self._error_for(response)
        log.info("A job with idempotency key %s already exists; reattaching to it", key)
        found: Job = await self._follow(existing)
        return found

    async def get_job(self, job_id: str) -> Job:
        response = await self.send(self.dialect.get(job_id), job_id=job_id)
        return same_job(job_id, self.dialect.parse_job(response), "lookup")

    async def get_jobs(self, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        """Look up many jobs, in batches the dialect allows; returns (found, missing ids).

        Only records of ids asked for are returned: a record of another job is never taken for
        one of them (in place of one, it is a :class:`MalformedResponseError` naming both; an id
        answered neither way is in neither list, and callers treat it as an error).
        Without a batch call in the dialect, the jobs are looked up one by one, at most
        ``LOOKUP_CONCURRENCY`` at a time.
        """
        found: list[Job] = []
        missing: list[str] = []
        unique = list(dict.fromkeys(job_ids))
        batch = self.batch_lookup
        if batch is None:
            return await self._get_jobs_singly(unique)
        for start in range(0, len(unique), batch.max_batch):
            chunk = unique[start : start + batch.max_batch]
            jobs, absent = batch.parse_many(await self.send(batch.get_many(chunk)), chunk)
            asked = set(chunk)
            ours = [job for job in jobs if job.id in asked]
            others = [job.id for job in jobs if job.id not in asked]
            gone = [job_id for job_id in absent if job_id in asked]
            unanswered = asked - {job.id for job in ours} - set(gone)
            if others and unanswered:
                # Records of jobs nobody asked about where asked-for ones should be: a
                # service answering for the wrong job is a broken service, never a success.
                raise MalformedResponseError(
                    f"the batch lookup of job(s) {', '.join(sorted(unanswered))} answered with the record(s) of "
                    f"job(s) {', '.join(others[:5])} instead"
                )
            found.extend(ours)
            missing.extend(gone)
        return found, missing

    async def watch(self, seen: Mapping[str, int], wait_s: float) -> tuple[list[Job], list[str]]:
        """The jobs whose version differs from ``seen`` and the ids gone, once there are any, or
        empty lists after ``wait_s`` seconds. Only for dialects with the :class:`Watch` capability."""
        feed = self.job_watch
        if feed is None:
            raise ConfigurationError(f"the {self.dialect.name} dialect cannot watch jobs")
        response = await self.send(feed.watch(seen, wait_s), timeout=self.config.request_timeout + wait_s)
        return feed.parse_watch(response)

    async def _get_jobs_singly(self, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        limit = asyncio.Semaphore(LOOKUP_CONCURRENCY)

        async def one(job_id: str) -> Job | None:
            async with limit:
                try:
                    return await self.get_job(job_id)
                except JobNotFoundError:
                    return None

        jobs = await asyncio.gather(*(one(job_id) for job_id in job_ids))
        missing = [job_id for job_id, job in zip(job_ids, jobs, strict=True) if job is None]
        return [job for job in jobs if job is not None], missing

    async def list_jobs(self, query: ListQuery) -> AsyncIterator[Job]:
        """Every job matching the query, following pagination; ``query.limit`` caps the total.

        Each job is checked against the query here too: a service that filters less than asked
        (or not at all) lists the same jobs as one that filters everything.
        """
        cursor: str | None = None
        yielded = 0
        limit = query.limit
        while True:
            page_size = min(limit - yielded, 1000) if limit else None
            page = self.dialect.parse_page(await self.send(self.dialect.list_jobs(query, page_size=page_size, cursor=cursor)))
            for job in page.jobs:
                if not query.matches(job):
                    continue
                yield job
                yielded += 1
                if limit and yielded >= limit:
                    return
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def cancel_job(self, job_id: str) -> Job:
        response = await self.send(self.dialect.cancel(job_id), job_id=job_id)
        job: Job = await self._follow(self.dialect.parse_cancel(response, job_id))
        return same_job(job_id, job, "cancel")

    async def get_result(self, job_id: str) -> Any:
        response = await self.send(self.dialect.result(job_id), job_id=job_id)
        return await self._follow(self.dialect.parse_result(response, job_id))

    async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> LogChunk:
        """Log text from ``offset``; the same contract whatever the service offers.

        A service without logs reads as an empty, complete log. A service that only returns
        the whole log (Ray) gets its offsets emulated here; whether that log is complete depends
        on whether the job has ended: ``ended`` when the caller knows (a wait that has just seen
        its status), else its status is read first. A log of records (Prefect) is read a page
        at a time, its offsets counting records (``LogChunk.records``).
        """
        if self.record_logs is not None:
            return await self._record_log(self.record_logs, job_id, offset, ended)
        if self.offset_logs is not None:
            return self.offset_logs.parse_logs(await self.send(self.offset_logs.logs(job_id, offset), job_id=job_id))
        if self.whole_logs is None:
            return LogChunk("", offset, offset, True)
        if ended is None:
            ended = (await self.get_job(job_id)).status in TERMINAL
        whole = self.whole_logs.parse_whole_log(await self.send(self.whole_logs.whole_log(job_id), job_id=job_id))
        return slice_log(whole, offset, complete=ended)

    async def _record_log(self, logs: RecordLogs, job_id: str, offset: int, ended: bool | None) -> LogChunk:
        """One page of a record log from record ``offset``: complete only when the job has ended and a page comes back short.

        A short page means the reader caught up with the log as it is now. ``ended`` is what the
        caller saw before this read; unknown (None), the status is read after a short page, and
        if the job has ended the page is read again: a record stored between the first read and
        the end of the job is not lost behind a "complete".
        """
        offset = max(0, offset)
        if logs.log_cursor_paging:
            return await self._cursor_record_log(logs, job_id, offset, ended)

        async def page() -> list[str]:
            return logs.parse_log_records(await self.send(logs.log_records(job_id, offset), job_id=job_id), offset).lines

        lines = await page()
        if len(lines) < logs.log_page_size and ended is None:
            ended = (await self.get_job(job_id)).status in TERMINAL
            if ended:
                lines = await page()
        complete = bool(ended) and len(lines) < logs.log_page_size
        return LogChunk("".join(line + "\n" for line in lines), offset, offset + len(lines), complete, records=True)

    async def _cursor_record_log(self, logs: RecordLogs, job_id: str, offset: int, ended: bool | None) -> LogChunk:
        """A record log paged by cursor, read from record ``offset``: the page that holds it, found by the
        cursors of page starts seen before (kept per job in this process), else walked to from the first page."""
        cursors = _page_cursors(self.config, job_id)
        start = max(s for s in cursors if s <= offset)
        cursor = cursors[start]

        async def page(start: int, cursor: str | None) -> RecordPage:
            return logs.parse_log_records(await self.send(logs.log_records(job_id, start, cursor), job_id=job_id), start)

        def caught_up(found: RecordPage) -> bool:
            return found.next_cursor is None or len(found.lines) < logs.log_page_size

        found = await page(start, cursor)
        while not caught_up(found) and start + len(found.lines) <= offset:  # walk to the page that holds offset
            start, cursor = start + len(found.lines), found.next_cursor
            cursors[start] = cursor
            found = await page(start, cursor)
        if caught_up(found) and ended is None:
            ended = (await self.get_job(job_id)).status in TERMINAL
            if ended:
                found = await page(start, cursor)
        if not caught_up(found):
            cursors[start + len(found.lines)] = found.next_cursor
        lines = found.lines[offset - start :]
        complete = bool(ended) and caught_up(found)
        return LogChunk("".join(line + "\n" for line in lines), offset, offset + len(lines), complete, records=True)

    async def health(self) -> dict[str, Any]:
        return self.dialect.parse_health(await self.send(self.dialect.health()))


# The cursor of each page start seen, per (connection, job), for record logs paged by cursor:
# a later read from an offset starts at its page instead of walking from the first. Kept in the
# process (a hook makes a client per call) for the most recently read jobs.
_PAGE_CURSORS: collections.OrderedDict[tuple[Any, ...], dict[int, str | None]] = collections.OrderedDict()
PAGE_CURSOR_JOBS = 256


def _page_cursors(config: ServiceConfig, job_id: str) -> dict[int, str | None]:
    key = (config.base_url, config.dialect, config.dialect_options, job_id)
    cursors = _PAGE_CURSORS.pop(key, None) or {0: None}
    _PAGE_CURSORS[key] = cursors
    while len(_PAGE_CURSORS) > PAGE_CURSOR_JOBS:
        _PAGE_CURSORS.popitem(last=False)
    return cursors


async def _read_body(raw: aiohttp.ClientResponse, limit: int, described: str) -> bytes:
    """The whole body, however many segments it arrives in, or a clear error.

    A body over ``limit`` bytes is a permanent error naming the cap (repeating the call would
    bring the same body); a body cut short by the peer is a transient one (a reset).
    """
    too_big = (
        f"{described}: response body larger than {limit} bytes (the connection extra max_response_bytes); "
        "raise it if the service's answers are legitimately this large"
    )
    if raw.content_length is not None and raw.content_length > limit and "content-encoding" not in raw.headers:
        raise PermanentError(too_big, status=raw.status)
    chunks: list[bytes] = []
    size = 0
    # iter_any() yields what has arrived until the end of the body; read(n) would return only
    # the first segment on a real network.
    async for chunk in raw.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PermanentError(too_big, status=raw.status)
        chunks.append(chunk)
    body = b"".join(chunks)
    if raw.content_length is not None and size < raw.content_length and "content-encoding" not in raw.headers:
        raise TransientError(f"{described}: connection closed after {size} of {raw.content_length} bytes")
    return body


def same_job(asked: str, job: Job, call: str) -> Job:
    """``job`` if it is the record of ``asked``; a record of another job is never a success."""
    if job.id != asked:
        raise MalformedResponseError(f"Job {asked}: the {call} answered with the record of another job, {job.id}")
    return job
