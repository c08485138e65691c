"""One shared watcher per service per event loop: every wait's status checks, coalesced.

A triggerer holds hundreds to thousands of waits. Each wait keeps its own jittered schedule
(the wait loop decides *when*) but, instead of sending its own request, subscribes to the
watcher and asks it for each check. Three pieces do the work, each readable alone:

- the :class:`~jobservice_provider.core.schedule.CheckSchedule` (pure): who is due when,
  which checks may be held for the watch, when the service is paused;
- the :class:`BatchPoller`: answers due checks with batch lookups (up to the dialect's batch
  size per request) on one connection pool;
- the :class:`WatchFeed`, where the dialect can watch many jobs in one request (the native
  ``POST /v1/watch``): one watch stays open over every running job, answers a job's pending
  checks as soon as it changes, and lets checks that may wait for a change skip polling.

A transient failure is handed to every wait in the batch (each applies its own error budget)
and pauses the service for the backoff or ``Retry-After``, bounded by the waits' retry
policies and released by the next request that succeeds. Any other exception in background
work fails exactly the checks it was serving, with the exception named, and the watcher
carries on: no wait can hang on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any, Protocol

from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.errors import (
    JobNotFoundError,
    JobServiceError,
    MalformedResponseError,
    PermanentError,
    TransientError,
)
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import Rand, RetryPolicy
from jobservice_provider.core.retry import OutageLog
from jobservice_provider.core.schedule import DEFAULT_WINDOW, Check, CheckSchedule, Unchanged
from jobservice_provider.core.sessions import shared_session

log = logging.getLogger(__name__)

# Batch requests in flight at once per service.
MAX_CONCURRENT_REQUESTS = 4
# The watch: how long one request may stay open; how long while jobs are still joining (a
# newcomer's change is reported once the next watch lists it, so that must come soon); and
# the pause after an answer, during which further changes gather so one answer carries many.
WATCH_SECONDS = 20.0
WATCH_SECONDS_WHILE_JOINING = 2.0
WATCH_GAP = 1.0


class BatchClient(Protocol):
    """What the watcher needs of a client (the core client, or a fake in unit tests)."""

    @property
    def max_batch(self) -> int: ...

    @property
    def max_watch(self) -> int:
        """0 when the service cannot watch."""
        ...

    async def get_jobs(self, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]: ...

    async def watch(self, seen: Mapping[str, int], wait_s: float) -> tuple[list[Job], list[str]]: ...


def background_failure(what: str, exc: BaseException) -> PermanentError:
    """The error a wait gets when background work failed in a way nobody planned for."""
    return PermanentError(f"{what} failed: {type(exc).__name__}: {exc}")


def unanswered_error(job_id: str) -> MalformedResponseError:
    return MalformedResponseError(f"Job {job_id}: the batch lookup answered neither its record nor that it is missing")


class Subscription:
    """One wait's handle on the watcher: ``await sub.check(delay, hold)`` is the job's record as
    of ``delay`` seconds from now, give or take the smaller of half the coalescing window and a
    tenth of ``delay``. With ``hold``, the answer may come later, when the job changes, if the
    watch covers it (the caller bounds the wait, e.g. by its deadline). Cancelling the returned
    future withdraws the check."""

    __slots__ = ("job_id", "retry", "watcher")

    def __init__(self, watcher: Watcher, job_id: str, retry: RetryPolicy) -> None:
        self.watcher, self.job_id, self.retry = watcher, job_id, retry

    def check(self, delay: float, hold: bool = False, unchanged: Unchanged | None = None) -> asyncio.Future[Job]:
        """With ``unchanged``, an answer that finds the job as the wait last saw it is not handed
        over: the job is checked again on the wait's schedule, and the future is answered when
        the job has changed or the next check would fall after ``unchanged.horizon``."""
        # A plain future rather than a coroutine: a waiting task then holds one object less
        # and a shallower stack (thousands of them wait here at once).
        answer: asyncio.Future[Job] = self.watcher._loop.create_future()
        self.watcher._schedule_check(self.job_id, delay, hold, answer, unchanged)
        return answer


class Watcher:
    """The shared watcher of one service in one event loop (see the module's docstring).

    :param config: the service.
    :param client: the client to use (default: one on the service's shared session, made by
        :meth:`open`); tests inject a fake.
    :param window: the coalescing window in seconds.
    :param rand: random source for the pause's jitter.
    """

    def __init__(
        self,
        config: ServiceConfig,
        *,
        client: BatchClient | None = None,
        window: float = DEFAULT_WINDOW,
        rand: Rand = random.random,
    ) -> None:
        self.config = config
        self.client: Any = client
        self.rand = rand
        self.schedule = CheckSchedule(window)
        self.outage = OutageLog(f"Connection {config.conn_id!r}" if config.conn_id else config.base_url, log)
        self.requests_sent = 0
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()  # the schedule changed: the poller re-plans
        self._joined = asyncio.Event()  # a job got its first record: the watch can take it
        self._retry_policies: Counter[RetryPolicy] = Counter()  # of the current subscriptions
        self._consecutive_failures = 0  # of requests to the service, for the pause
        self.last_join = -WATCH_SECONDS  # when a job last got its first record
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resources = AsyncExitStack()
        self.poller = BatchPoller(self)
        self.feed: WatchFeed | None = None

    def now(self) -> float:
        return self._loop.time()

    async def open(self) -> None:
        """Take the service's shared session (unless a client was given) and start watching."""
        if self.client is None:
            session = await self._resources.enter_async_context(shared_session(self.config))
            self.client = JobServiceClient(self.config, session=session)
        self._start(self.poller.run, "poller")
        if self.client.max_watch > 0:
            self.feed = WatchFeed(self)
            self._start(self.feed.run, "watch")

    def adopt(self, config: ServiceConfig) -> None:
        """Use a newer read of the same connection (a rotated token, say) from the next request on."""
        self.config = config
        if isinstance(self.client, JobServiceClient):
            self.client = JobServiceClient(config, session=self.client._session)

    @asynccontextmanager
    async def subscribe(self, job_id: str, retry: RetryPolicy | None = None) -> AsyncIterator[Subscription]:
        """Wait on ``job_id`` through the watcher; its checks are withdrawn when the block ends."""
        policy = retry or RetryPolicy(budget=self.config.transient_error_budget)
        self.schedule.subscribe(job_id)
        self._retry_policies[policy] += 1
        try:
            yield Subscription(self, job_id, policy)
        finally:
            self._retry_policies[policy] -= 1
            if self._retry_policies[policy] <= 0:
                del self._retry_policies[policy]
            for check in self.schedule.unsubscribe(job_id):
                check.token.cancel()

    def _schedule_check(
        self,
        job_id: str,
        delay: float,
        hold: bool,
        answer: asyncio.Future[Job],
        unchanged: Unchanged | None = None,
    ) -> None:
        # A check whose waiter gave up (its future cancelled, e.g. by the wait's deadline) is
        # found when it falls due and dropped then: a done-callback per check would cost a loop
        # callback for every one of the thousands answered.
        check = self.schedule.add(job_id, self.now(), delay, hold, answer, unchanged)
        wake_at = self.schedule.wake_at()
        if wake_at is not None and wake_at >= check.latest:
            self._changed.set()  # the new check is the earliest: re-plan the next tick

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for check in self.schedule.pending():
            check.token.cancel()
        await self._resources.aclose()

    # -- shared by the poller and the feed ---------------------------------------------------------
    def _start(self, work: Callable[[], Awaitable[None]], name: str, serving: list[Check] | None = None) -> None:
        """Run background work, watched. If it ever ends with an exception (a bug), the checks
        it was serving fail with that exception named: ``serving`` for a batch; for a loop that
        serves every wait (``serving`` None), every pending check, and the loop starts again."""
        task = asyncio.ensure_future(work())
        task.set_name(f"jobservice {name} {self.config.base_url}")
        self._tasks.add(task)

        def ended(done: asyncio.Task[Any]) -> None:
            self._tasks.discard(done)
            if done.cancelled() or done.exception() is None:
                return
            exc = done.exception()
            assert exc is not None
            log.error("%s: the %s stopped: %s: %s", self.outage.service, name, type(exc).__name__, exc)
            error = background_failure(f"Watching {self.config.base_url} ({name})", exc)
            self.deliver_error(serving if serving is not None else list(self.schedule.pending()), error)
            if serving is None:
                self._start(work, name)

        task.add_done_callback(ended)

    def service_ok(self) -> None:
        """A request succeeded: any pause is over."""
        self._consecutive_failures = 0
        if self.schedule.paused_until:
            self.schedule.resume()
            self._changed.set()

    def service_failed(self, exc: TransientError) -> float:
        """A request failed transiently: pause the service, within the strictest retry policy of
        the waits it serves (so one 429 cannot freeze a wait longer than its own policy allows).
        Returns the pause in seconds."""
        self._consecutive_failures += 1
        pause = self.pause_policy().delay(self._consecutive_failures, self.rand, exc.retry_after)
        self.schedule.pause(self.now() + pause)
        return pause

    def pause_policy(self) -> RetryPolicy:
        if not self._retry_policies:
            return RetryPolicy(budget=self.config.transient_error_budget)
        return min(self._retry_policies, key=lambda policy: policy.cap)

    def deliver(self, job: Job) -> None:
        checks, joined = self.schedule.answer(job)
        if joined:
            self.last_join = self.now()
            self._joined.set()
        now = self.now()
        for check in checks:
            if check.token.done():  # withdrawn by its waiter in the meantime
                continue
            unchanged = check.unchanged
            if unchanged is not None and unchanged.holds_for(job):
                delay = unchanged.next_delay()
                assert unchanged.until is not None  # set when its first check was scheduled
                if now + delay < unchanged.until:  # check again on the wait's schedule; it sleeps on
                    self._schedule_check(job.id, delay, check.hold, check.token, unchanged)
                    continue
            check.token.set_result(job)

    def deliver_error(self, checks: Sequence[Check], exc: BaseException) -> None:
        for check in self.schedule.close(list(checks)):
            if not check.token.done():
                check.token.set_exception(exc)

    def fail_job(self, job_id: str, exc: BaseException) -> None:
        for check in self.schedule.fail(job_id):
            if not check.token.done():
                check.token.set_exception(exc)


class BatchPoller:
    """Sends the due checks as batch lookups and hands each wait its answer."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)

    async def run(self) -> None:
        watcher = self.watcher
        schedule = watcher.schedule
        while True:
            wake_at = schedule.wake_at()
            now = watcher.now()
            if wake_at is None or wake_at > now:
                watcher._changed.clear()
                timeout = None if wake_at is None else wake_at - now
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands as the
                # event is set, and close() then waits for good on a poller that runs on.
                with suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await watcher._changed.wait()
                continue
            feed = watcher.feed
            taken = schedule.take_due(
                now, watch_ok=feed is not None and feed.healthy, next_watch_by=feed.next_watch_by if feed else 0.0
            )
            due = [check for check in taken if not check.token.cancelled()]
            if len(due) < len(taken):  # their waiters gave up: nobody to ask for
                schedule.close([check for check in taken if check.token.cancelled()])
            max_batch = watcher.client.max_batch
            for start in range(0, len(due), max_batch):
                batch = due[start : start + max_batch]
                watcher._start(functools.partial(self.answer, batch), "batch lookup", serving=batch)
            await asyncio.sleep(0)  # let the batches start before planning the next tick

    async def answer(self, checks: list[Check]) -> None:
        """One batch lookup for ``checks``; every check gets its record or an error, whatever happens."""
        watcher = self.watcher
        ids = list(dict.fromkeys(check.job_id for check in checks))
        try:
            async with self._limit:
                watcher.requests_sent += 1
                jobs, missing = await watcher.client.get_jobs(ids)
        except TransientError as exc:
            watcher.service_failed(exc)
            watcher.deliver_error(checks, exc)
            return
        except JobServiceError as exc:
            watcher.deliver_error(checks, exc)
            return
        except Exception as exc:
            # Not a failure of the service but of something on our side (a dialect bug, aiohttp
            # refusing a header): find out which jobs it concerns by asking for them one by one.
            if len(ids) > 1:
                await asyncio.gather(*(self.answer([c for c in checks if c.job_id == job_id]) for job_id in ids))
            else:
                watcher.deliver_error(checks, background_failure(f"Status lookup of job {ids[0]}", exc))
            return
        watcher.service_ok()
        for job in jobs:
            watcher.deliver(job)
        for job_id in missing:
            watcher.fail_job(job_id, JobNotFoundError(job_id, f"Job {job_id} not found"))
        for check in checks:
            if not check.done:  # the client keeps only records of ids asked for: never another job's
                watcher.deliver_error([check], unanswered_error(check.job_id))


class WatchFeed:
    """Keeps one watch open over every subscribed job with a known, unfinished record."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.healthy = True  # the last watch succeeded (or none has failed yet)
        self.next_watch_by = 0.0  # the next watch request starts by then

    async def run(self) -> None:
        watcher = self.watcher
        schedule = watcher.schedule
        limit = watcher.client.max_watch
        while True:
            seen = schedule.watch_list(limit)
            if not seen:
                watcher._joined.clear()
                await watcher._joined.wait()
                continue
            joining = watcher.now() - watcher.last_join < WATCH_SECONDS
            wait_s = WATCH_SECONDS_WHILE_JOINING if joining else WATCH_SECONDS
            self.next_watch_by = watcher.now() + wait_s + WATCH_GAP
            try:
                watcher.requests_sent += 1
                changed, missing = await watcher.client.watch(seen, wait_s)
            except Exception as exc:
                await asyncio.sleep(self._failed(exc, len(seen)))
                continue
            if not self.healthy:
                log.info("%s: watching %d jobs works again", watcher.outage.service, len(seen))
            self.healthy = True
            watcher.service_ok()
            self.next_watch_by = watcher.now() + WATCH_GAP
            for job in changed:
                if job.id in seen:  # a record we did not ask about is never taken for another job's
                    watcher.deliver(job)
            for job_id in missing:
                watcher.fail_job(job_id, JobNotFoundError(job_id, f"Job {job_id} not found (it existed before)"))
            await asyncio.sleep(WATCH_GAP)

    def _failed(self, exc: BaseException, watched: int) -> float:
        """Held checks go back to polling; returns how long to wait before the next watch."""
        watcher = self.watcher
        if self.healthy:  # once per outage, not on every retry
            log.warning(
                "%s: watching %d jobs failed (%s: %s); polling them until the watch works again",
                watcher.outage.service,
                watched,
                type(exc).__name__,
                exc,
            )
        self.healthy = False
        if watcher.schedule.uncover_all():
            watcher._changed.set()
        if isinstance(exc, TransientError):
            return watcher.service_failed(exc)
        # A permanent failure will not go away soon; polling does the work meanwhile.
        return WATCH_SECONDS


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
