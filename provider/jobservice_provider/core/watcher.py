"""One shared watcher per service per event loop: every wait's status checks, coalesced.

A triggerer holds hundreds to thousands of waits. Each wait keeps its own jittered
schedule (the wait loop decides *when*), but instead of sending its own request it asks
the watcher, which gathers every check that falls due within a short coalescing window
and answers them with batch lookups (up to the dialect's batch size per request), on one
connection pool. A transient failure is handed to every wait in the batch (each applies
its own error budget) and pauses the whole service for the backoff or Retry-After.

Where the dialect has a batch long-poll (the native API does), the watcher also keeps a few
long-polls open over the jobs it has seen; a change answers that job's pending check at once,
so completion is seen within about a second without polling faster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Hashable
from contextlib import AsyncExitStack, asynccontextmanager, suppress

from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.errors import JobNotFoundError, JobServiceError, TransientError
from jobservice_provider.core.job import Job
from jobservice_provider.core.sessions import shared_session

log = logging.getLogger(__name__)

# A check is answered within ±(COALESCE_WINDOW / 2) of when it is due, so that checks
# falling due close together share one request; and within ±SLACK_FRACTION of its own
# delay, so a wait that polls faster than the window keeps its pace.
COALESCE_WINDOW = 0.5
SLACK_FRACTION = 0.1
# Batch requests in flight at once per service.
MAX_CONCURRENT_REQUESTS = 4
# Pause for the whole service after a transient failure without Retry-After.
TRANSIENT_PAUSE = 1.0
# With a dialect that has a batch long-poll, up to this many requests (of up to max_batch jobs
# each) stay open, each answering when one of its jobs changes or after LONG_POLL_SECONDS.
LONG_POLL_SLOTS = 10
LONG_POLL_SECONDS = 20.0


@dataclasses.dataclass(order=True)
class _Check:
    latest: float  # the last moment the check may be answered
    seq: int
    not_before: float = dataclasses.field(compare=False)  # the first moment it may be
    job_id: str = dataclasses.field(compare=False)
    answer: asyncio.Future[Job] = dataclasses.field(compare=False)


class Watcher:
    """Answers ``lookup(job_id, delay)`` with the job's record, fetched in batches."""

    def __init__(self, config: ServiceConfig, window: float = COALESCE_WINDOW) -> None:
        self.config = config
        self.window = window
        self.requests_sent = 0
        self._checks: list[_Check] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._paused_until = 0.0
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        self._loop = asyncio.get_running_loop()
        self._batches: set[asyncio.Task[None]] = set()
        self._resources = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._slots: list[asyncio.Task[None]] = []
        self._pending: dict[str, list[_Check]] = {}  # job id -> its unanswered checks
        self._versions: dict[str, int] = {}  # job id -> the version last answered
        self._covered: set[str] = set()  # job ids in an open long-poll
        self._watch_more = asyncio.Event()

    async def open(self) -> None:
        """Take the service's shared session and start watching."""
        session = await self._resources.enter_async_context(shared_session(self.config))
        self.client = JobServiceClient(self.config, session=session)
        self._task = asyncio.create_task(self._run(), name=f"jobservice watcher {self.config.base_url}")
        if self.client.dialect.supports_batch_long_poll:
            self._slots = [asyncio.create_task(self._long_poll_slot()) for _ in range(LONG_POLL_SLOTS)]

    async def lookup(self, job_id: str, delay: float) -> Job:
        """The record of ``job_id`` as of ``delay`` seconds from now, give or take the
        smaller of half the coalescing window and a tenth of ``delay``."""
        answer: asyncio.Future[Job] = self._loop.create_future()
        delay = max(0.0, delay)
        due = self._loop.time() + delay
        slack = min(self.window / 2, delay * SLACK_FRACTION)
        check = _Check(due + slack, next(self._seq), due - slack, job_id, answer)
        heapq.heappush(self._checks, check)
        self._pending.setdefault(job_id, []).append(check)
        if job_id in self._versions and job_id not in self._covered:
            self._watch_more.set()
        if self._checks[0] is check:
            self._changed.set()  # the new check is the earliest: re-plan the next tick
        return await answer  # a cancelled wait cancels its future; the watcher skips it

    async def close(self) -> None:
        tasks = [*self._batches, *self._slots, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for check in self._checks:
            check.answer.cancel()
        await self._resources.aclose()

    async def _run(self) -> None:
        while True:
            self._drop_cancelled()
            if not self._checks:
                self._changed.clear()
                await self._changed.wait()
                continue
            # Wait as long as the most urgent check allows, then answer every check whose
            # slack has begun: that is what makes one request serve many waits.
            wake_at = max(self._checks[0].latest, self._paused_until)
            if wake_at > self._loop.time():
                self._changed.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wake_at - self._loop.time())
                continue
            due = self._take_due(self._loop.time())
            for start in range(0, len(due), self.client.dialect.max_batch):
                batch = asyncio.create_task(self._answer(due[start : start + self.client.dialect.max_batch]))
                self._batches.add(batch)
                batch.add_done_callback(self._batches.discard)
            await asyncio.sleep(0)  # let the batches start before planning the next tick

    def _drop_cancelled(self) -> None:
        while self._checks and self._checks[0].answer.done():
            heapq.heappop(self._checks)

    def _take_due(self, now: float) -> list[_Check]:
        due = [check for check in self._checks if check.not_before <= now and not check.answer.done()]
        self._checks = [check for check in self._checks if check.not_before > now and not check.answer.done()]
        heapq.heapify(self._checks)
        return sorted(due)

    async def _answer(self, checks: list[_Check]) -> None:
        ids = list(dict.fromkeys(check.job_id for check in checks))
        async with self._limit:
            try:
                self.requests_sent += 1
                jobs, missing = await self.client.get_jobs(ids)
            except TransientError as exc:
                pause = exc.retry_after if exc.retry_after is not None else TRANSIENT_PAUSE
                self._paused_until = max(self._paused_until, self._loop.time() + pause)
                self._fail(checks, exc)
                return
            except JobServiceError as exc:
                self._fail(checks, exc)
                return
        by_id = {job.id: job for job in jobs}
        absent = set(missing)
        for check in checks:
            if check.answer.done():
                continue
            job = by_id.get(check.job_id)
            if job is not None:
                self._deliver(check, job)
            elif check.job_id in absent:
                check.answer.set_exception(JobNotFoundError(check.job_id, f"Job {check.job_id} not found"))
            else:
                check.answer.set_exception(JobServiceError(f"Job {check.job_id}: the batch lookup did not mention it"))

    def _deliver(self, check: _Check, job: Job) -> None:
        check.answer.set_result(job)
        if job.version is not None:
            self._versions[job.id] = job.version
        self._has_waiters(job.id)

    def _has_waiters(self, job_id: str) -> bool:
        waiting = [c for c in self._pending.get(job_id, ()) if not c.answer.done()]
        if waiting:
            self._pending[job_id] = waiting
        else:
            self._pending.pop(job_id, None)
        return bool(waiting)

    async def _long_poll_slot(self) -> None:
        """Keep one long-poll open over jobs with pending checks that no other slot watches."""
        while True:
            seen: dict[str, int] = {}
            for job_id in list(self._versions):
                if not self._has_waiters(job_id):
                    del self._versions[job_id]  # nobody waits on it any more
                elif job_id not in self._covered:
                    seen[job_id] = self._versions[job_id]
                    if len(seen) == self.client.dialect.max_batch:
                        break
            if not seen:
                self._watch_more.clear()
                await self._watch_more.wait()
                continue
            self._covered.update(seen)
            try:
                jobs, _ = await self.client.wait_for_any_change(seen, LONG_POLL_SECONDS)
            except TransientError as exc:
                await asyncio.sleep(exc.retry_after if exc.retry_after is not None else TRANSIENT_PAUSE)
                continue
            except JobServiceError as exc:
                log.warning("Long-poll of %d jobs failed (%s); relying on polling for a while", len(seen), exc)
                await asyncio.sleep(LONG_POLL_SECONDS)
                continue
            finally:
                self._covered.difference_update(seen)
            for job in jobs:
                if job.version is not None and job.version != seen.get(job.id):
                    for check in self._pending.get(job.id, ()):
                        if not check.answer.done():
                            self._deliver(check, job)

    @staticmethod
    def _fail(checks: list[_Check], exc: JobServiceError) -> None:
        for check in checks:
            if not check.answer.done():
                check.answer.set_exception(exc)


@dataclasses.dataclass
class _Registered:
    watcher: Watcher
    users: int = 0


_watchers: dict[tuple[int, Hashable], _Registered] = {}


@asynccontextmanager
async def shared_watcher(config: ServiceConfig) -> AsyncIterator[Watcher]:
    """The watcher of ``config``'s service in the running loop; it stops when its last user leaves."""
    key = (id(asyncio.get_running_loop()), config.service_key)
    registered = _watchers.get(key)
    if registered is None:
        registered = _watchers[key] = _Registered(Watcher(config))
        await registered.watcher.open()
    registered.users += 1
    try:
        yield registered.watcher
    finally:
        registered.users -= 1
        if registered.users == 0 and _watchers.get(key) is registered:
            del _watchers[key]
            await registered.watcher.close()
