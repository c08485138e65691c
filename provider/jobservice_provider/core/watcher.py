"""One shared watcher per service per event loop: every wait's status checks, coalesced.

A triggerer holds hundreds to thousands of waits. Each wait keeps its own jittered
schedule (the wait loop decides *when*), but instead of sending its own request it asks
the watcher, which gathers every check that falls due within a short coalescing window
and answers them with batch lookups (up to the dialect's batch size per request), on one
connection pool. A transient failure is handed to every wait in the batch (each applies
its own error budget) and pauses the whole service for the backoff or Retry-After.

Where the dialect can watch many jobs in one request (the native API's ``POST /v1/watch``),
one watch stays open over every job the watcher has seen. It answers a job's pending check
as soon as the job changes, so completion is seen within about a second; and while the watch
is healthy, a check that may be held (the wait does not follow logs) is not polled at all:
the service would have said if the job had changed. If the watch fails, held checks go back
to polling, so a broken watch costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import gc
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
from jobservice_provider.core.status import TERMINAL

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
# The watch: how long one request may stay open; how long while jobs are still joining (a
# newcomer's change is reported once the next watch lists it, so that must come soon); and
# the pause after an answer, during which further changes gather so one answer carries many.
WATCH_SECONDS = 20.0
WATCH_SECONDS_WHILE_JOINING = 2.0
WATCH_GAP = 1.0


class _Check:
    """One pending status check of one wait."""

    __slots__ = ("answer", "delay", "held", "hold", "job_id", "latest", "not_before", "seq")

    def __init__(
        self, latest: float, seq: int, not_before: float, delay: float, job_id: str, answer: asyncio.Future[Job], hold: bool
    ):
        self.latest = latest  # the last moment the check may be answered (unless held)
        self.seq = seq
        self.not_before = not_before  # the first moment it may be
        self.delay = delay  # how long the wait chose to wait for it
        self.job_id = job_id
        self.answer = answer
        self.hold = hold  # may wait past `latest` for a change while the watch covers the job
        self.held = False  # out of the schedule, waiting for the watch

    def __lt__(self, other: _Check) -> bool:
        return (self.latest, self.seq) < (other.latest, other.seq)


class _Watched:
    """What the watcher knows of one job."""

    __slots__ = ("checks", "covered", "record", "users")

    def __init__(self) -> None:
        self.checks: list[_Check] = []  # unanswered checks, due or held
        self.record: Job | None = None  # the last record seen
        self.covered = False  # the open watch lists it: its next change will be reported
        self.users = 0  # waits registered on it


class Watcher:
    """Answers ``lookup(job_id, delay, hold)`` with the job's record, fetched in batches."""

    def __init__(self, config: ServiceConfig, window: float = COALESCE_WINDOW) -> None:
        self.config = config
        self.window = window
        self.requests_sent = 0
        self._checks: list[_Check] = []  # a heap by latest moment; answered checks are skipped
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._paused_until = 0.0
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        self._loop = asyncio.get_running_loop()
        self._batches: set[asyncio.Task[None]] = set()
        self._resources = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._jobs: dict[str, _Watched] = {}
        self._joined = asyncio.Event()  # a job got its first record: the watch can take it
        self._last_join = -WATCH_SECONDS
        self._watch_ok = False  # the last watch request succeeded (or none has failed yet)
        self._next_watch_by = 0.0  # the next watch request starts by then

    async def open(self) -> None:
        """Take the service's shared session and start watching."""
        self._session = await self._resources.enter_async_context(shared_session(self.config))
        self.client = JobServiceClient(self.config, session=self._session)
        self._task = asyncio.create_task(self._run(), name=f"jobservice watcher {self.config.base_url}")
        if self.client.dialect.supports_watch:
            self._watch_ok = True
            self._watch_task = asyncio.create_task(self._watch(), name=f"jobservice watch {self.config.base_url}")

    def adopt(self, config: ServiceConfig) -> None:
        """Use a newer read of the same connection (a rotated token, say) from the next request on."""
        self.config = config
        self.client = JobServiceClient(config, session=self._session)

    def register(self, job_id: str) -> None:
        """A wait on ``job_id`` begins: keep the job in the watch until it ends."""
        self._entry(job_id).users += 1

    def unregister(self, job_id: str) -> None:
        """The wait ended (its own checks are answered or cancelled with it)."""
        entry = self._jobs.get(job_id)
        if entry is not None:
            entry.users -= 1
            if entry.users <= 0:
                del self._jobs[job_id]

    def _entry(self, job_id: str) -> _Watched:
        entry = self._jobs.get(job_id)
        if entry is None:
            entry = self._jobs[job_id] = _Watched()
        return entry

    def lookup(self, job_id: str, delay: float, hold: bool = False) -> asyncio.Future[Job]:
        """The record of ``job_id`` as of ``delay`` seconds from now, give or take the smaller
        of half the coalescing window and a tenth of ``delay`` (a future to await).

        With ``hold``, a job the watch covers is not looked up when the check falls due: the
        answer comes when the job changes (the caller bounds the wait, e.g. by its deadline).
        Cancelling the future withdraws the check.
        """
        answer: asyncio.Future[Job] = self._loop.create_future()
        delay = max(0.0, delay)
        due = self._loop.time() + delay
        slack = min(self.window / 2, delay * SLACK_FRACTION)
        check = _Check(due + slack, next(self._seq), due - slack, delay, job_id, answer, hold)
        self._entry(job_id).checks.append(check)
        heapq.heappush(self._checks, check)
        if self._checks[0] is check:
            self._changed.set()  # the new check is the earliest: re-plan the next tick
        # A plain future rather than a coroutine: a waiting task then holds one object less
        # and a shallower stack (thousands of them wait here at once).
        return answer

    async def close(self) -> None:
        tasks = [*self._batches, *(task for task in (self._task, self._watch_task) if task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for entry in self._jobs.values():
            for check in entry.checks:
                check.answer.cancel()
        await self._resources.aclose()

    # -- polling ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            while self._checks and self._checks[0].answer.done():
                heapq.heappop(self._checks)
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

    def _take_due(self, now: float) -> list[_Check]:
        """Pop the checks whose slack has begun; held checks of covered jobs stay with their job."""
        due: list[_Check] = []
        later: list[_Check] = []
        # Slack is at most half the window, so every check due now ends by now + window.
        while self._checks and self._checks[0].latest <= now + self.window:
            check = heapq.heappop(self._checks)
            if check.answer.done():
                continue
            if check.not_before > now:
                later.append(check)
                continue
            if check.hold and self._may_hold(check, now):
                check.held = True  # the watch answers it when the job changes
                continue
            due.append(check)
        for check in later:
            heapq.heappush(self._checks, check)
        return due

    def _may_hold(self, check: _Check, now: float) -> bool:
        """Whether the watch will report the job's change at least as soon as a poll would.

        Yes if the open watch lists the job. A job that got its first record since is listed by
        the next watch, which reports a change made in between at once (it sends the version
        we saw): holding it is as good as polling if that watch starts within the check's delay.
        """
        entry = self._jobs.get(check.job_id)
        if entry is None or entry.record is None or not self._watch_ok:
            return False
        if entry.covered:
            return True
        joins_next_watch = entry.record.version is not None and entry.record.status not in TERMINAL
        return joins_next_watch and self._next_watch_by - now <= check.delay

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
        for job in jobs:
            self._deliver(job)
        not_found = {job_id: JobNotFoundError(job_id, f"Job {job_id} not found") for job_id in missing}
        for job_id, error in not_found.items():
            self._fail_job(job_id, error)
        by_id = {job.id: job for job in jobs}
        for check in checks:  # those not registered with a job entry
            if check.answer.done():
                continue
            found = by_id.get(check.job_id)
            if found is not None:
                check.answer.set_result(found)
            elif check.job_id in not_found:
                check.answer.set_exception(not_found[check.job_id])
            else:
                check.answer.set_exception(JobServiceError(f"Job {check.job_id}: the batch lookup did not mention it"))

    def _deliver(self, job: Job) -> None:
        """Answer every pending check of ``job`` with its record."""
        entry = self._jobs.get(job.id)
        if entry is None:
            return
        if entry.record is None and job.status not in TERMINAL:
            self._last_join = self._loop.time()
            self._joined.set()
        entry.record = job
        checks, entry.checks = entry.checks, []
        for check in checks:
            if not check.answer.done():
                check.answer.set_result(job)
        if entry.users <= 0:
            del self._jobs[job.id]

    def _fail_job(self, job_id: str, exc: JobServiceError) -> None:
        entry = self._jobs.get(job_id)
        if entry is not None:
            checks, entry.checks = entry.checks, []
            self._fail(checks, exc)

    @staticmethod
    def _fail(checks: list[_Check], exc: JobServiceError) -> None:
        for check in checks:
            if not check.answer.done():
                check.answer.set_exception(exc)

    # -- the watch -----------------------------------------------------------------------------
    async def _watch(self) -> None:
        """Keep one watch open over every registered job with a known, unfinished record."""
        limit = self.client.dialect.max_watch
        while True:
            seen: dict[str, int] = {}
            for job_id, entry in self._jobs.items():
                record = entry.record
                if record is not None and record.version is not None and record.status not in TERMINAL and len(seen) < limit:
                    seen[job_id] = record.version
                    entry.covered = True
                else:
                    self._release(entry)
            if not seen:
                self._joined.clear()
                await self._joined.wait()
                continue
            joining = self._loop.time() - self._last_join < WATCH_SECONDS
            wait_s = WATCH_SECONDS_WHILE_JOINING if joining else WATCH_SECONDS
            self._next_watch_by = self._loop.time() + wait_s + WATCH_GAP
            try:
                self.requests_sent += 1
                changed, missing = await self.client.watch(seen, wait_s)
            except JobServiceError as exc:
                if self._watch_ok:  # once per outage, not on every retry
                    log.warning("Watching %d jobs failed (%s); polling them until the watch works again", len(seen), exc)
                self._watch_ok = False
                for entry in self._jobs.values():
                    self._release(entry)
                if isinstance(exc, TransientError):
                    await asyncio.sleep(exc.retry_after if exc.retry_after is not None else TRANSIENT_PAUSE)
                else:
                    await asyncio.sleep(WATCH_SECONDS)
                continue
            if not self._watch_ok:
                log.info("Watching %d jobs works again", len(seen))
            self._watch_ok = True
            self._next_watch_by = self._loop.time() + WATCH_GAP
            for job in changed:
                self._deliver(job)
            for job_id in missing:
                self._fail_job(job_id, JobNotFoundError(job_id, f"Job {job_id} not found (it existed before)"))
            await asyncio.sleep(WATCH_GAP)

    def _release(self, entry: _Watched) -> None:
        """No watch will report the job's changes: its held checks go back to polling, due now."""
        entry.covered = False
        for check in entry.checks:
            if check.held and not check.answer.done():
                check.held = False
                check.latest = check.not_before = self._loop.time()
                heapq.heappush(self._checks, check)
                self._changed.set()


_collector_kept_off_loaded_heap = False


def _keep_collector_off_loaded_heap() -> None:
    """Once per process: put every object alive now out of the cyclic collector's reach.

    A triggerer's heap is mostly Airflow's imported modules and their objects, which live as
    long as the process. Thousands of waits allocate enough to make full collections
    frequent, and each one walks that whole heap with the event loop stopped (about 220,000
    objects, 120–160 ms per pass, measured here). ``gc.freeze()`` leaves those long-lived
    objects out of every later pass, so a full collection costs in proportion to what came
    after. (What was garbage at this moment stays allocated: a one-time cost.)
    """
    global _collector_kept_off_loaded_heap
    if not _collector_kept_off_loaded_heap:
        _collector_kept_off_loaded_heap = True
        gc.freeze()


class _Registered:
    __slots__ = ("users", "watcher")

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.users = 0


_watchers: dict[tuple[int, Hashable], _Registered] = {}


@asynccontextmanager
async def shared_watcher(config: ServiceConfig) -> AsyncIterator[Watcher]:
    """The watcher of ``config``'s service in the running loop; it stops when its last user leaves."""
    key = (id(asyncio.get_running_loop()), config.service_key)
    registered = _watchers.get(key)
    if registered is None:
        _keep_collector_off_loaded_heap()
        registered = _watchers[key] = _Registered(Watcher(config))
        await registered.watcher.open()
    elif registered.watcher.config is not config and registered.watcher.config != config:
        # A watcher in a busy triggerer may never see its last user leave: it follows the
        # connection as new waits read it, or a rotated token would never reach it.
        registered.watcher.adopt(config)
    registered.users += 1
    try:
        yield registered.watcher
    finally:
        registered.users -= 1
        if registered.users == 0 and _watchers.get(key) is registered:
            del _watchers[key]
            await registered.watcher.close()
