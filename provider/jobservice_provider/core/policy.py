"""Pure timing policies: when to poll a job, and how to back off from transient errors.

Two loops, two policies (as botocore keeps request retries apart from waiters):
``PollPolicy`` spaces status checks of a job that is still running;
``RetryPolicy`` spaces retries while the service is failing transiently and
bounds them by a *time budget of continuous failure*, never by a count.
Neither holds a clock or a random source: callers pass ``rand`` (returning a
float in [0, 1)) so tests can fix it.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from jobservice_provider.core.errors import ConfigurationError

Rand = Callable[[], float]

_P = TypeVar("_P", "PollPolicy", "RetryPolicy")

# The shortest poll interval accepted anywhere (connection extra, operator, sensor, trigger).
# A typo such as 1e-6 once made 4,093 requests in 3 s; nothing a job service does needs
# checking more than ten times a second, and long polls or the watcher report sooner anyway.
MIN_POLL_INTERVAL = 0.1


def _jittered(base: float, jitter: float, rand: Rand) -> float:
    """``base`` moved uniformly within ±``jitter`` of itself."""
    return base * (1.0 - jitter + 2.0 * jitter * rand())


def _below(cap: float, value: float) -> float:
    """``value`` reflected below ``cap`` when jitter took it above: waits that all reached the cap
    still spread out (within ``jitter`` below it) instead of lining up on it."""
    return max(0.0, 2 * cap - value) if value > cap else value


def _from_dict(cls: type[_P], data: Mapping[str, Any] | None) -> _P:
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigurationError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class PollPolicy:
    """When to check a running job's status again.

    :param interval: seconds between checks while the job is young.
    :param max_interval: if set, checks spread out as the job ages, to a tenth of its
        age, never beyond this many seconds (long jobs need not be checked as often).
    :param jitter: proportional jitter on every delay (0.2 = ±20%), so tasks that
        started together drift apart instead of polling in lockstep.
    """

    interval: float = 10.0
    max_interval: float | None = None
    jitter: float = 0.2

    AGE_FRACTION = 0.1

    def __post_init__(self) -> None:
        if not self.interval >= MIN_POLL_INTERVAL:
            raise ConfigurationError(
                f"poll interval must be at least {MIN_POLL_INTERVAL:g} seconds "
                f"(a shorter one floods the service with status checks), got {self.interval!r}"
            )
        if self.max_interval is not None and self.max_interval < self.interval:
            raise ConfigurationError(f"max_poll_interval ({self.max_interval}) must be >= poll_interval ({self.interval})")
        if not 0 <= self.jitter < 1:
            raise ConfigurationError(f"poll jitter must be in [0, 1), got {self.jitter!r}")

    def first_delay(self, rand: Rand = random.random) -> float:
        """Delay before the first check: uniform in [0, interval), to break up bursts."""
        return self.interval * rand()

    def next_delay(self, job_age: float = 0.0, rand: Rand = random.random, retry_after: float | None = None) -> float:
        """Delay before the next check of a job that has been running ``job_age`` seconds.

        A ``retry_after`` the service sent wins over the schedule; jitter only
        lengthens it, so the service's wish is always honoured.
        """
        if retry_after is not None:
            return retry_after * (1.0 + self.jitter * rand())
        if self.max_interval is None:
            return _jittered(self.interval, self.jitter, rand)
        base = min(self.max_interval, max(self.interval, job_age * self.AGE_FRACTION))
        return _below(self.max_interval, _jittered(base, self.jitter, rand))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PollPolicy:
        return _from_dict(cls, data)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Backoff while calls to the service fail transiently.

    :param budget: seconds of *continuous* failure tolerated before giving up with
        the last error; any success resets it.
    :param base: first backoff delay in seconds; doubles per consecutive failure.
    :param cap: the longest backoff delay in seconds.
    :param jitter: proportional jitter on every delay.
    """

    budget: float = 600.0
    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise ConfigurationError(f"transient error budget must be >= 0 seconds, got {self.budget!r}")
        if not 0 < self.base <= self.cap:
            raise ConfigurationError(f"retry backoff needs 0 < base <= cap, got base={self.base!r} cap={self.cap!r}")
        if not 0 <= self.jitter < 1:
            raise ConfigurationError(f"retry jitter must be in [0, 1), got {self.jitter!r}")

    def delay(
        self,
        consecutive_failures: int,
        rand: Rand = random.random,
        retry_after: float | None = None,
        time_left: float | None = None,
    ) -> float:
        """Delay after the ``consecutive_failures``-th failure in a row (1-based).

        The backoff doubles from ``base`` and never exceeds ``cap``, jitter included. A
        ``retry_after`` the service sent raises the delay to at least that value, but never
        above ``cap``: a ``Retry-After: 999999`` must not park a wait for days, and
        ``Retry-After: 0`` must not become a tight loop, so the normal backoff is the floor.
        No delay goes past ``time_left`` (what remains of the budget), so the last try comes
        when the budget ends, not a whole backoff after it: failures give up at most one
        request's duration after the budget.
        """
        exponent = min(max(consecutive_failures, 1) - 1, 32)
        backoff = _below(self.cap, _jittered(min(self.cap, self.base * 2.0**exponent), self.jitter, rand))
        if retry_after is not None and math.isfinite(retry_after) and retry_after > backoff:
            backoff = min(retry_after, self.cap)
        if time_left is not None:
            backoff = min(backoff, max(0.0, time_left))
        return backoff

    def exhausted(self, failing_since: float, now: float) -> bool:
        """Whether failures that began at ``failing_since`` have used up the budget."""
        return now - failing_since >= self.budget

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RetryPolicy:
        return _from_dict(cls, data)
