"""The one retry discipline for every call to a service: backoff within a time budget of
continuous failure, ``Retry-After`` honoured within bounds, never past the caller's deadline,
and warnings per outage instead of per failed request.

The wait loop, the shared watcher and every hook call (reads, cancel, a keyed submit) use
these pieces, so a 429 or a 503 is treated the same wherever it happens. Clock, sleep and
random source are injectable so tests step them exactly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from jobservice_provider.core.errors import TransientError
from jobservice_provider.core.policy import Rand, RetryPolicy

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
_log = logging.getLogger(__name__)

# Under a lasting outage, one summary line per this many seconds (per service), not one per request.
OUTAGE_SUMMARY_EVERY = 60.0


class FailureStreak:
    """Consecutive transient failures of one caller against its retry policy's time budget."""

    __slots__ = ("clock", "count", "policy", "rand", "since")

    def __init__(self, policy: RetryPolicy, clock: Clock, rand: Rand) -> None:
        self.policy, self.clock, self.rand = policy, clock, rand
        self.since: float | None = None
        self.count = 0

    def next_delay(self, exc: TransientError) -> float | None:
        """The delay before trying again, or None when the budget is spent."""
        now = self.clock()
        self.since = now if self.since is None else self.since
        self.count += 1
        if self.policy.exhausted(self.since, now):
            return None
        time_left = self.policy.budget - (now - self.since)
        return self.policy.delay(self.count, self.rand, exc.retry_after, time_left=time_left)

    def exhausted_message(self, what: str, exc: TransientError) -> str:
        elapsed = self.clock() - (self.since or self.clock())
        return (
            f"{what}: the service kept failing for {elapsed:.0f}s "
            f"(transient error budget {self.policy.budget:.0f}s); last error: {exc}"
        )


class OutageLog:
    """Warnings about one service's transient failures: one when an outage starts, then at
    most one summary a minute with a count, and one line on recovery.

    One instance per service in the triggerer (shared by every wait on it) keeps an outage
    at a few lines however many waits it touches; on a worker, one per hook.

    :param service: how the service is named in the lines (a connection id or base URL).
    """

    def __init__(self, service: str, log: logging.Logger | Any = None, clock: Clock = time.monotonic) -> None:
        self.service = service
        self.log = log or _log
        self.clock = clock
        self.failing_since: float | None = None
        self.failures = 0  # failures reported in this outage
        self.unreported = 0  # failures since the last line
        self.last_line = 0.0

    @property
    def in_outage(self) -> bool:
        return self.failing_since is not None

    def failed(self, what: str, exc: BaseException, delay: float | None) -> None:
        """A request failed transiently; ``delay`` is when it will be tried again (None: not retried)."""
        now = self.clock()
        self.failures += 1
        retry = f"; retrying in {delay:.1f}s" if delay is not None else ""
        if self.failing_since is None:
            self.failing_since = self.last_line = now
            self.unreported = 0
            self.log.warning("%s: %s: transient error (%s)%s", self.service, what, exc, retry)
            return
        self.unreported += 1
        if now - self.last_line >= OUTAGE_SUMMARY_EVERY:
            self.log.warning(
                "%s: still failing after %.0fs: %d more failure(s) since the last report; last: %s: %s%s",
                self.service,
                now - self.failing_since,
                self.unreported,
                what,
                exc,
                retry,
            )
            self.last_line, self.unreported = now, 0

    def succeeded(self) -> None:
        """A request succeeded: an outage, if any, is over."""
        if self.failing_since is None:
            return
        self.log.info(
            "%s: working again after %.0fs and %d failure(s)", self.service, self.clock() - self.failing_since, self.failures
        )
        self.failing_since, self.failures, self.unreported = None, 0, 0


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    deadline: float | None = None,
    outage: OutageLog | None = None,
    log: logging.Logger | Any = None,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    rand: Rand = random.random,
) -> T:
    """Run ``operation`` until it succeeds, retrying transient errors within the policy's budget
    and never past ``deadline`` (epoch seconds, the caller's Airflow timeout).

    Only for operations that are safe to repeat (reads, cancel, a submit with an idempotency
    key the service honours). Each attempt is cut off at the deadline too, so a hung request
    cannot outlive it. Raises the last :class:`TransientError` (with the budget or the
    deadline named) when it gives up.
    """
    outage = outage or OutageLog(what, log, clock)
    streak = FailureStreak(policy, clock, rand)
    while True:
        try:
            if deadline is None:
                result = await operation()
            else:
                left = deadline - clock()
                if left <= 0:
                    raise TransientError(f"{what}: the deadline passed before the call could be made")
                try:
                    async with asyncio.timeout(left):
                        result = await operation()
                except TimeoutError:
                    raise TransientError(f"{what}: the deadline passed while waiting for the service") from None
        except TransientError as exc:
            delay = streak.next_delay(exc)
            if delay is None:
                outage.failed(what, exc, None)
                raise TransientError(streak.exhausted_message(what, exc), status=exc.status) from exc
            if deadline is not None and clock() + delay >= deadline:
                outage.failed(what, exc, None)
                raise TransientError(f"{what}: gave up at the caller's deadline; last error: {exc}", status=exc.status) from exc
            outage.failed(what, exc, delay)
            await sleep(delay)
            continue
        outage.succeeded()
        return result
