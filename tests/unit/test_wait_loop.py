"""The wait loop, stepped with a fake clock and a scripted service (no sockets, no real sleeping)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from tests.support.clock import FakeClock

from jobservice_provider.core.dialects import LogChunk
from jobservice_provider.core.errors import AuthenticationError, JobNotFoundError, TransientError
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.wait import Outcome, WaitSpec, wait_for_job

Step = str | Exception  # a status to report, or an error to raise


class ScriptedService:
    """Answers get_job from a script; the last step repeats."""

    def __init__(self, steps: Iterable[Step]) -> None:
        self.steps = list(steps)
        self.calls = 0

    async def get_job(self, job_id: str) -> Job:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if isinstance(step, Exception):
            raise step
        return Job(id=job_id, status=None, raw_status=step) if step == "WEIRD" else Job.from_json({"id": job_id, "status": step})


async def run(steps: Iterable[Step], clock: FakeClock, **spec: object) -> tuple[Outcome, str, ScriptedService]:
    service = ScriptedService(steps)
    wait_spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=10.0, jitter=0.2), **spec)  # type: ignore[arg-type]
    result = await wait_for_job(service, wait_spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    return result.outcome, result.message, service


async def test_polls_with_first_random_delay_until_success() -> None:
    clock = FakeClock()
    outcome, _, service = await run(["QUEUED", "RUNNING", "SUCCEEDED"], clock)
    assert outcome is Outcome.SUCCESS and service.calls == 3
    assert clock.sleeps == [5.0, 10.0, 10.0]  # first delay = rand * interval, then interval ± jitter


async def test_failed_job_ends_the_wait_with_its_error() -> None:
    clock = FakeClock()
    failed = Job.from_json({"id": "j_1", "status": "FAILED", "error": {"type": "Boom", "message": "disk full"}})

    class Failing(ScriptedService):
        async def get_job(self, job_id: str) -> Job:
            return failed

    result = await wait_for_job(Failing([]), WaitSpec(job_id="j_1"), clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.FAILED
    assert "j_1" in result.message and "FAILED" in result.message and "disk full" in result.message


async def test_deadline_is_absolute_and_not_a_count() -> None:
    clock = FakeClock()
    outcome, message, service = await run(["RUNNING"], clock, deadline=clock.now + 95)
    assert outcome is Outcome.TIMEOUT and "RUNNING" in message
    assert clock.now == pytest.approx(1_095.0)  # never sleeps past the deadline
    assert service.calls == 9  # 5 s first delay, then every 10 s until 95 s


async def test_no_deadline_waits_as_long_as_the_job_runs() -> None:
    clock = FakeClock()
    outcome, _, service = await run(["RUNNING"] * 5_000 + ["SUCCEEDED"], clock)
    assert outcome is Outcome.SUCCESS and service.calls == 5_001  # ~14 h of polling, no hidden limit


async def test_transient_errors_are_ridden_out_within_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    errors = [TransientError("HTTP 503", status=503)] * 3 + [TransientError("HTTP 429", status=429, retry_after=30)]
    with caplog.at_level(logging.INFO):
        outcome, _, _ = await run(["RUNNING", *errors, "SUCCEEDED"], clock)
    assert outcome is Outcome.SUCCESS
    # backoff 1, 2, 4 s, then the service's Retry-After (30 s: above the backoff, below the cap)
    assert clock.sleeps[2:6] == [1.0, 2.0, 4.0, 30.0]
    # one warning when the failures start, none per retry, one line when they end
    assert sum("transient error" in r.message for r in caplog.records) == 1
    assert sum("working again after 37s and 4 failure(s)" in r.message for r in caplog.records) == 1


async def test_transient_budget_is_time_of_continuous_failure() -> None:
    clock = FakeClock()
    outcome, message, _ = await run(["RUNNING", TransientError("HTTP 502", status=502)], clock, retry=RetryPolicy(budget=120))
    assert outcome is Outcome.ERROR
    assert "HTTP 502" in message and "budget 120s" in message


async def test_permanent_error_fails_at_once() -> None:
    clock = FakeClock()
    outcome, message, service = await run([AuthenticationError("HTTP 401: wrong token", status=401)], clock)
    assert outcome is Outcome.ERROR and "wrong token" in message and service.calls == 1


async def test_not_found_is_tolerated_only_right_after_submission() -> None:
    clock = FakeClock()
    missing = JobNotFoundError("j_1", "Job j_1 not found")
    outcome, _, _ = await run([missing, missing, "SUCCEEDED"], clock)
    assert outcome is Outcome.SUCCESS
    clock = FakeClock()
    outcome, message, _ = await run([missing], clock, not_found_grace=30)
    assert outcome is Outcome.ERROR and "not found" in message and clock.now - 1_000 >= 30


async def test_unknown_status_keeps_waiting_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    with caplog.at_level(logging.WARNING):
        outcome, _, _ = await run(["WEIRD", "WEIRD", "WEIRD", "SUCCEEDED"], clock)
    assert outcome is Outcome.SUCCESS
    assert sum("'WEIRD'" in r.message for r in caplog.records) == 1


async def test_seeded_random_gives_exact_delays() -> None:
    import random

    clock = FakeClock()
    service = ScriptedService(["RUNNING"] * 4 + ["SUCCEEDED"])
    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=10.0, jitter=0.2))
    await wait_for_job(service, spec, clock=clock, sleep=clock.sleep, rand=random.Random(42).random)
    # first delay = 10 * r1; then 10 * (0.8 + 0.4 * r) for r = the next draws of Random(42)
    assert [round(s, 6) for s in clock.sleeps] == [6.394268, 8.100043, 9.100117, 8.892843, 10.945885]


async def test_a_thousand_waits_started_together_do_not_poll_in_lockstep() -> None:
    import random

    interval, rng = 10.0, random.Random(7)
    poll_times: list[list[float]] = [[], [], []]  # the 1st, 2nd and 3rd poll of every wait

    class Recording(ScriptedService):
        def __init__(self, clock: FakeClock) -> None:
            super().__init__(["RUNNING", "RUNNING", "SUCCEEDED"])
            self.clock = clock

        async def get_job(self, job_id: str) -> Job:
            poll_times[self.calls].append(self.clock.now)
            return await super().get_job(job_id)

    for _ in range(1_000):
        clock = FakeClock()
        clock.now += rng.random()  # all started within the same second
        spec = WaitSpec(job_id="j", poll=PollPolicy(interval=interval))
        await wait_for_job(Recording(clock), spec, clock=clock, sleep=clock.sleep, rand=rng.random)

    for times in poll_times:
        slices = [0] * 10
        for t in times:
            slices[int((t % interval) / interval * 10)] += 1
        assert max(slices) <= 200, slices  # no 10% slice of the interval holds more than 20% of the polls


async def test_remote_log_lines_are_copied_once_in_order_whole_lines_only(caplog: pytest.LogCaptureFixture) -> None:
    from jobservice_provider.core.dialects import LogChunk

    log_text = "line one\nline two\nline thr"  # the job is mid-way through writing line three
    grown = log_text + "ee\nline four\n"

    class WithLogs(ScriptedService):
        async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> LogChunk:
            text = (grown if self.calls >= 3 else log_text).encode()
            return LogChunk(text[offset:].decode(), offset, len(text), self.calls >= 3)

    clock = FakeClock()
    service = WithLogs(["RUNNING", "RUNNING", "SUCCEEDED"])
    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=1.0), follow_logs=True)
    with caplog.at_level(logging.INFO):
        result = await wait_for_job(service, spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    copied = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[job j_1]")]
    assert copied == ["[job j_1] line one", "[job j_1] line two", "[job j_1] line three", "[job j_1] line four"]
    assert result.log_offset == len(grown.encode())  # whoever prints the final tail starts here


async def test_the_log_is_read_on_a_schedule_of_its_own_not_with_each_status_check() -> None:
    """Status checks spread out as the job ages (here every 30 s); the log is read every
    poll interval (1 s) from the first record on, in between, and once more at the end, each
    read saying whether the job has ended (so a whole-log service needs no status lookup)."""
    clock = FakeClock()
    started = datetime.fromtimestamp(clock.now + 3600.0, UTC).isoformat()  # the clock's epoch is 1970
    clock.now += 7200.0  # an old job: its checks are max_interval apart
    events: list[tuple[float, str]] = []

    class Service:
        calls = 0

        async def get_job(self, job_id: str) -> Job:
            self.calls += 1
            events.append((clock.now, "status"))
            status = "SUCCEEDED" if self.calls == 3 else "RUNNING"
            return Job.from_json({"id": job_id, "status": status, "created_at": started})

        async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> LogChunk:
            events.append((clock.now, f"log ended={ended}"))
            return LogChunk("", offset, offset, bool(ended))

    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=1.0, max_interval=30.0, jitter=0.0), follow_logs=True)
    result = await wait_for_job(Service(), spec, check_now=True, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.SUCCESS
    checks = [at - 8_200.0 for at, what in events if what == "status"]
    reads = [at - 8_200.0 for at, what in events if what.startswith("log")]
    assert checks == [0.0, 30.0, 60.0]  # one lookup per status check, nothing else in between
    assert reads == [float(second) for second in range(61)]  # every second, the last one once the job ended
    assert {what for _, what in events[:-1] if what.startswith("log")} == {"log ended=False"}
    assert events[-1] == (8_260.0, "log ended=True")


def test_retry_after_as_seconds_or_http_date() -> None:
    from jobservice_provider.core.dialects.native import parse_retry_after

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


class LogsOnly:
    """A client for a wait whose status checks go to ``lookup``: it only serves the remote log."""

    async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> LogChunk:
        return LogChunk("", offset, offset, False)


async def test_a_check_the_watcher_may_hold_is_still_bounded_by_the_deadline() -> None:
    asked: list[bool] = []

    def lookup(delay: float, hold: bool, unchanged: object = None) -> asyncio.Future[Job]:
        asked.append(hold)
        answer: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        if len(asked) == 1:
            answer.set_result(Job.from_json({"id": "j_1", "status": "RUNNING"}))
        return answer  # later checks: never answered, like a watch that sees no change

    started = time.monotonic()
    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=60.0), deadline=time.time() + 0.5)
    result = await wait_for_job(LogsOnly(), spec, check_now=True, lookup=lookup)  # type: ignore[arg-type]
    assert result.outcome is Outcome.TIMEOUT and 0.45 < time.monotonic() - started < 2.0
    assert asked == [True, True]  # a status-only wait lets the watcher hold its checks
    asked.clear()
    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=60.0), deadline=time.time() + 0.2, follow_logs=True)
    result = await wait_for_job(LogsOnly(), spec, check_now=True, lookup=lookup)  # type: ignore[arg-type]
    # The log needs regular wake-ups: no check may be held (the log read may come first, then the deadline).
    assert result.outcome is Outcome.TIMEOUT and asked and not any(asked)


async def test_a_record_seen_again_is_judged_as_before_and_a_new_one_afresh(caplog: pytest.LogCaptureFixture) -> None:
    """Dialects hand back the very Job object when a record did not change (the wait then skips
    working out what it already knows); the job's age, the verdict and the status line must
    still follow the record of every check."""
    clock = FakeClock()
    first = Job.from_json({"id": "j_1", "status": "RUNNING", "started_at": "1970-01-01T00:06:40Z"})  # t=400
    restarted = Job.from_json({"id": "j_1", "status": "RUNNING", "started_at": "1970-01-01T00:18:20Z"})  # t=1100
    done = Job.from_json({"id": "j_1", "status": "SUCCEEDED", "started_at": "1970-01-01T00:18:20Z"})
    answers = [first, first, restarted, restarted, done]

    class SameObjects(ScriptedService):
        async def get_job(self, job_id: str) -> Job:
            self.calls += 1
            return answers[self.calls - 1]

    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=10.0, max_interval=1_000.0, jitter=0.0))
    with caplog.at_level(logging.INFO, logger="jobservice_provider.core.wait"):
        result = await wait_for_job(SameObjects([]), spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.SUCCESS
    # A tenth of the age of the record just seen: 605 s and 665.5 s old, then 32.05 s and 42.05 s after the restart.
    assert clock.sleeps == pytest.approx([5.0, 60.5, 66.55, 10.0, 10.0])
    status_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Job j_1:")]
    assert status_lines == ["Job j_1: RUNNING", "Job j_1: SUCCEEDED"]
