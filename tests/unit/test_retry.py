"""The one retry discipline, with fixed random and a fake clock: Retry-After of every kind,
budgets, deadlines and warnings per outage."""

from __future__ import annotations

import email.utils
import logging
import math

import pytest
from tests.support.clock import FakeClock

from jobservice_provider.core.dialects.base import parse_retry_after
from jobservice_provider.core.errors import TransientError
from jobservice_provider.core.policy import RetryPolicy
from jobservice_provider.core.retry import OUTAGE_SUMMARY_EVERY, FailureStreak, OutageLog, retry_transient

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("2", 2.0),
        (" 2.5 ", 2.5),
        ("999999", 999999.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # a date in the past: now
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("-5", None),
        ("soon", None),
        ("Mon, 99 Foo 2026 25:61:00 GMT", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date_and_nothing_else(header: str | None, seconds: float | None) -> None:
    parsed = parse_retry_after(header, now=NOW)
    assert parsed == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_raises_the_backoff_but_never_above_the_cap_or_the_budget_left() -> None:
    policy = RetryPolicy(budget=600, base=1, cap=60, jitter=0.0)
    assert policy.delay(1, rand=lambda: 0.5, retry_after=0) == 1  # the backoff is the floor: no tight loop
    assert policy.delay(3, rand=lambda: 0.5, retry_after=2) == 4  # a smaller wish changes nothing
    assert policy.delay(1, rand=lambda: 0.5, retry_after=12) == 12
    assert policy.delay(1, rand=lambda: 0.5, retry_after=999999) == 60  # the cap, not 11 days
    assert policy.delay(1, rand=lambda: 0.5, retry_after=math.inf) == 1  # not a number of seconds
    assert policy.delay(1, rand=lambda: 0.5, retry_after=30, time_left=5) == 5  # not past the budget


def test_jittered_backoff_stays_under_the_cap_and_spread_out() -> None:
    policy = RetryPolicy(base=1, cap=60, jitter=0.2)
    at_cap = [policy.delay(20, rand=lambda r=r: r) for r in (0.0, 0.25, 0.5, 0.75, 0.999)]
    assert max(at_cap) <= 60 and len(set(at_cap)) >= 3  # before: 68 s with the 60 s cap
    assert min(at_cap) >= 60 * 0.8


def failing(errors: list[Exception], result: str = "ok") -> tuple[list[int], object]:
    calls = [0]

    async def operation() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return calls, operation


async def test_retry_transient_rides_out_failures_and_reports_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(NOW)
    calls, operation = failing([TransientError("HTTP 503", status=503)] * 3 + [TransientError("429", retry_after=7)])
    outage = OutageLog("Connection 'c'", logging.getLogger("t"), clock)
    with caplog.at_level(logging.INFO, logger="t"):
        assert (
            await retry_transient(
                operation, RetryPolicy(jitter=0), what="Get x", outage=outage, clock=clock, sleep=clock.sleep, rand=lambda: 0.5
            )
            == "ok"
        )
    assert calls[0] == 5 and clock.sleeps == [1, 2, 4, 8]  # Retry-After 7 < the backoff of 8
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "transient error (HTTP 503); retrying in 1.0s" in lines[0]
    assert "working again after 15s and 4 failure(s)" in lines[1]


async def test_retry_transient_gives_up_at_the_budget_with_the_last_error() -> None:
    clock = FakeClock(NOW)
    _, operation = failing([TransientError("HTTP 502 bad gateway", status=502)] * 100)
    with pytest.raises(TransientError, match=r"kept failing for 1\d\ds .*budget 100s.*502 bad gateway"):
        await retry_transient(operation, RetryPolicy(budget=100, jitter=0), what="Get x", clock=clock, sleep=clock.sleep)
    assert sum(clock.sleeps) < 100 + 64


async def test_retry_transient_never_sleeps_past_the_deadline() -> None:
    clock = FakeClock(NOW)
    calls, operation = failing([TransientError("429", retry_after=999999)] * 100)
    with pytest.raises(TransientError, match="deadline"):
        await retry_transient(
            operation, RetryPolicy(jitter=0), what="Cancel job j", deadline=NOW + 5, clock=clock, sleep=clock.sleep
        )
    assert calls[0] == 1 and clock.sleeps == []  # the 60 s cap would end past the deadline: stop now
    clock = FakeClock(NOW)
    calls, operation = failing([TransientError("503")] * 100)
    with pytest.raises(TransientError, match="deadline"):
        await retry_transient(operation, RetryPolicy(jitter=0), what="Get x", deadline=NOW + 5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1, 2] and clock.now <= NOW + 5  # 1 + 2 + 4 would pass it


def test_an_outage_is_three_lines_however_many_failures() -> None:
    clock = FakeClock(NOW)
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.levelname} {record.getMessage()}")

    logger = logging.getLogger("outage-test")
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    outage = OutageLog("Connection 'svc'", logger, clock)
    for _ in range(798):  # 16 failed batches at ~50 waits each
        outage.failed("status check", TransientError("HTTP 503"), 1.0)
        clock.now += 0.1  # 80 s in all
    outage.succeeded()
    outage.succeeded()  # nothing more to say
    assert [r.split(" ")[0] for r in records] == ["WARNING", "WARNING", "INFO"], records
    assert "797 more failure(s)" not in records[1] and "still failing after 60s" in records[1]
    assert "798 failure(s)" in records[2]
    assert OUTAGE_SUMMARY_EVERY == 60.0


def test_a_failure_streak_measures_continuous_failure_from_its_first_error() -> None:
    clock = FakeClock(NOW)
    streak = FailureStreak(RetryPolicy(budget=10, jitter=0), clock, lambda: 0.5)
    assert streak.next_delay(TransientError("x")) == 1
    clock.now += 9
    # 1 s of budget left: neither Retry-After 30 nor the backoff (2 s) goes past it (issue 12:
    # the last try comes when the budget ends, not a whole backoff after it)
    assert streak.next_delay(TransientError("x", retry_after=30)) == 1
    clock.now += 1
    assert streak.next_delay(TransientError("x")) is None
