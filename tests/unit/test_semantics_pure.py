"""Pure pieces of the task semantics of issue 12: lifecycle targets, jittered caps, deadlines, keys."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
import pytest
from tests.support.clock import FakeClock

from jobservice_provider._task import sensor_started
from jobservice_provider.core.errors import (
    JobFailedError,
    JobNotFoundError,
    JobServiceError,
    JobStaleError,
    JobTimeoutError,
    TransientError,
)
from jobservice_provider.core.job import Job
from jobservice_provider.core.keys import (
    MAX_KEY_LENGTH,
    inputs_fingerprint,
    inputs_key,
    map_scoped,
    sendable,
    task_key,
    try_key,
)
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.retry import FailureStreak
from jobservice_provider.core.status import FAILURE, TERMINAL, JobStatus, WaitVerdict, verdict
from jobservice_provider.core.wait import Outcome, WaitResult, WaitSpec, wait_for_job
from jobservice_provider.triggers.jobservice import JobStatusTrigger, deadline_margin

Q, R, S, F, CG, CD = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLING,
    JobStatus.CANCELLED,
)
DONE, FAILED, WAITING = WaitVerdict.DONE, WaitVerdict.FAILED, WaitVerdict.WAITING


# -- 4. lifecycle targets: reached or passed (QUEUED < RUNNING < terminal), failures first -------


@pytest.mark.parametrize(
    ("targets", "failures", "expected"),
    [
        # the docs' table: target RUNNING with the default failure_statuses
        ({R}, FAILURE, {Q: WAITING, R: DONE, CG: WAITING, S: DONE, F: FAILED, CD: FAILED}),
        # target RUNNING with no failure statuses: any terminal status has passed RUNNING
        ({R}, set(), {Q: WAITING, R: DONE, CG: WAITING, S: DONE, F: DONE, CD: DONE}),
        # target QUEUED: every status has reached it; failures still first
        ({Q}, FAILURE, {Q: DONE, R: DONE, CG: DONE, S: DONE, F: FAILED, CD: FAILED}),
        # the default wait: SUCCEEDED; the other terminal statuses can never reach it
        ({S}, FAILURE, {Q: WAITING, R: WAITING, CG: WAITING, S: DONE, F: FAILED, CD: FAILED}),
        ({S}, set(), {Q: WAITING, R: WAITING, CG: WAITING, S: DONE, F: FAILED, CD: FAILED}),
        # cancel_and_wait: any terminal status
        (TERMINAL, set(), {Q: WAITING, R: WAITING, CG: WAITING, S: DONE, F: DONE, CD: DONE}),
        # a status both targeted and listed as a failure fails: failures are checked first
        ({R, F}, {F}, {Q: WAITING, R: DONE, CG: WAITING, S: DONE, F: FAILED, CD: DONE}),
    ],
    ids=["running", "running-no-failures", "queued", "succeeded", "succeeded-no-failures", "cancel", "overlap"],
)
def test_a_target_is_reached_when_the_job_is_in_it_or_has_passed_it(
    targets: set[JobStatus], failures: set[JobStatus], expected: dict[JobStatus, WaitVerdict]
) -> None:
    got = {status: verdict(status, frozenset(targets), frozenset(failures)) for status in expected}
    assert got == expected
    assert verdict(None, frozenset(targets), frozenset(failures)) is WAITING  # unknown: never a success


# -- 6. jitter inside every cap; the transient budget overrun by at most one request -------------


def rands(*values: float) -> Callable[[], float]:
    it = iter(values)
    return lambda: next(it)


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.75, 0.999999])
def test_poll_delays_of_an_old_job_never_exceed_max_poll_interval(rand: float) -> None:
    policy = PollPolicy(interval=10, max_interval=300, jitter=0.2)
    for age in (0, 2_900, 3_000, 10_000, 1e9):
        delay = policy.next_delay(age, lambda: rand)
        assert delay <= 300
        assert delay >= 0.8 * min(300, max(10, age / 10)) - 1e-9  # still jittered, within -20%
    # at the cap the delays still spread out instead of all being 300
    spread = {round(policy.next_delay(1e9, rands(r)), 3) for r in (0.05, 0.2, 0.7, 0.9)}
    assert len(spread) == 4 and max(spread) < 300


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999999])
def test_retry_backoff_never_exceeds_its_cap(rand: float) -> None:
    policy = RetryPolicy(base=1, cap=60, jitter=0.2)
    assert all(policy.delay(n, lambda: rand) <= 60 for n in range(1, 40))


def test_no_retry_delay_goes_past_what_is_left_of_the_budget() -> None:
    policy = RetryPolicy(budget=3, base=1, cap=60, jitter=0.2)
    assert policy.delay(3, lambda: 0.999, time_left=0.05) == pytest.approx(0.05)
    assert policy.delay(3, lambda: 0.999, retry_after=30, time_left=0.5) == pytest.approx(0.5)
    assert policy.delay(3, lambda: 0.5, time_left=100) == pytest.approx(4)


@pytest.mark.parametrize("request_seconds", [0.0, 0.4, 2.0])
def test_a_transient_budget_is_overrun_by_at_most_one_request(request_seconds: float) -> None:
    # Each request fails after request_seconds; the streak gives up no later than one request
    # after the budget ran out (it once slept a whole backoff past it: 7 s for a 3 s budget).
    clock = FakeClock()
    streak = FailureStreak(RetryPolicy(budget=3), clock, lambda: 0.999)
    first_failure = None
    while True:
        clock.now += request_seconds  # the request that fails
        first_failure = first_failure or clock.now
        delay = streak.next_delay(TransientError("503"))
        if delay is None:
            break
        clock.now += delay
    assert clock.now - first_failure <= 3 + request_seconds + 1e-9


# -- 5. deadlines as Airflow measures them; the trigger's margin min(2 s, 5%) --------------------


@pytest.mark.parametrize(("timeout", "margin"), [(None, 2.0), (4, 0.2), (10, 0.5), (40, 2.0), (3600, 2.0), (0, 0.0)])
def test_the_trigger_reports_a_timeout_at_most_min_2s_5pct_early(timeout: float | None, margin: float) -> None:
    assert deadline_margin(timeout) == pytest.approx(margin)


def test_the_trigger_keeps_its_margin_across_serialization() -> None:
    trigger = JobStatusTrigger(job_id="j_1", deadline=1_000.0, deadline_margin=0.5)
    assert trigger.spec.deadline == 999.5
    _, kwargs = trigger.serialize()
    assert kwargs["deadline_margin"] == 0.5
    assert JobStatusTrigger(**kwargs).serialize() == trigger.serialize()
    del kwargs["deadline_margin"]  # serialized by an earlier version: the old 2 s
    assert JobStatusTrigger(**kwargs).spec.deadline == 998.0


class Store:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = value


@dataclasses.dataclass
class TI:
    try_number: int
    max_tries: int
    start_date: datetime


def test_a_deferrable_sensors_timeout_counts_from_its_first_tries_start_across_retries() -> None:
    store = Store()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    # retries=2: Airflow sets max_tries=2; tries 1..3 belong to one count
    first = {"ti": TI(1, 2, t0), "task_state_store": store}
    assert sensor_started(first, retries=2) == t0.timestamp()
    retry = {"ti": TI(2, 2, t0 + timedelta(minutes=5)), "task_state_store": store}
    assert sensor_started(retry, retries=2) == t0.timestamp()
    # cleared after try 2: max_tries becomes 2 + 2, so try 3 starts a new count
    cleared = {"ti": TI(3, 4, t0 + timedelta(hours=1)), "task_state_store": store}
    assert sensor_started(cleared, retries=2) == (t0 + timedelta(hours=1)).timestamp()
    # without a store (Airflow 3.2) a retry counts from its own start
    assert sensor_started({"ti": TI(2, 2, t0 + timedelta(minutes=5))}, retries=2) == (t0 + timedelta(minutes=5)).timestamp()


# -- 3. not_found_grace in the wait loop ----------------------------------------------------------


class Missing:
    """A service that does not know the job (yet)."""

    def __init__(self, clock: FakeClock, visible_at: float | None = None) -> None:
        self.clock, self.visible_at, self.calls = clock, visible_at, 0

    async def get_job(self, job_id: str) -> Job:
        self.calls += 1
        if self.visible_at is None or self.clock.now < self.visible_at:
            raise JobNotFoundError(job_id, f"Job {job_id} not found")
        return Job.from_json({"id": job_id, "status": "RUNNING"})

    async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> Any:
        raise AssertionError("not used")

    async def cancel_job(self, job_id: str) -> Job:
        raise AssertionError("not used")


async def test_an_unknown_id_fails_when_the_grace_ends_naming_the_id_and_the_grace() -> None:
    clock = FakeClock()
    spec = WaitSpec(job_id="j_late", poll=PollPolicy(interval=4), not_found_grace=10)
    result = await wait_for_job(Missing(clock), spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.ERROR
    assert clock.now - 1_000 == pytest.approx(10)  # the last check falls when the grace ends, not after
    assert "Job j_late not found" in result.message and "not_found_grace=10s" in result.message


async def test_a_grace_that_began_before_the_wait_ends_when_it_began_plus_the_grace() -> None:
    clock = FakeClock()  # a sensor poked 7 s ago with not_found_grace=10: 3 s are left
    spec = WaitSpec(job_id="j_late", poll=PollPolicy(interval=1), not_found_grace=10, not_found_until=clock.now + 3)
    result = await wait_for_job(Missing(clock), spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.ERROR and clock.now - 1_000 == pytest.approx(3)
    assert "not_found_grace=10s" in result.message


async def test_a_job_that_appears_within_the_grace_is_waited_on() -> None:
    clock = FakeClock()
    spec = WaitSpec(job_id="j_late", targets=frozenset({R}), poll=PollPolicy(interval=1), not_found_grace=30)
    service = Missing(clock, visible_at=clock.now + 10)
    result = await wait_for_job(service, spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.SUCCESS and 10 <= clock.now - 1_000 <= 11.5


# -- 7. idempotency keys of any length ------------------------------------------------------------


def test_a_key_the_service_accepts_is_sent_unchanged() -> None:
    key = task_key("etl", "load", "manual__2026-01-01T00:00:00+00:00", -1)
    assert key == "airflow:etl:load:manual__2026-01-01T00:00:00+00:00:-1"
    assert sendable(key) == key and sendable("x" * 255) == "x" * 255


def test_a_long_key_is_shortened_stably_with_a_hash_of_the_whole_key() -> None:
    key = task_key("d" * 250, "t" * 250, "manual__2026-01-01T00:00:00+00:00", -1)
    sent = sendable(key)
    assert len(sent) == MAX_KEY_LENGTH and sent.isascii() and sent.isprintable()
    assert sent.startswith("airflow:" + "d" * 100) and sent[-41] == "#"
    assert sent[-40:] == hashlib.sha256(key.encode()).hexdigest()[:40]
    assert sendable(key) == sent  # the same task always gets the same key
    assert sendable(try_key(key, 2)) != sent and sendable(try_key(key, 2)) != sendable(try_key(key, 3))
    other = task_key("d" * 250, "t" * 250, "manual__2026-01-01T00:00:01+00:00", -1)
    assert sendable(other) != sent  # differs beyond the kept prefix: the hash tells them apart


def test_a_key_with_characters_a_header_cannot_carry_is_hashed() -> None:
    sent = sendable("clé-du-job\n")
    assert sent.isascii() and sent.isprintable() and sent.startswith("cl?-du-job?#") and len(sent) == 12 + 40


# -- 8. a mapped task's custom key is scoped by the map index -------------------------------------


def test_a_custom_key_of_a_mapped_task_instance_is_scoped_by_its_index() -> None:
    assert [map_scoped("k", i) for i in (-1, 0, 2)] == ["k", "k:map0", "k:map2"]


# -- 12. errors tell the truth ----------------------------------------------------------------------


def test_a_wait_result_raises_the_error_that_says_what_happened() -> None:
    cancelled = Job.from_json({"id": "j_1", "status": "CANCELLED", "error": {"type": "Cancelled", "message": "by request"}})
    with pytest.raises(JobFailedError) as failed:
        WaitResult(Outcome.FAILED, "j_1", cancelled, "Job j_1: CANCELLED").raise_for_outcome()
    assert (failed.value.status, failed.value.remote_error) == ("CANCELLED", "Cancelled: by request")
    running = Job.from_json({"id": "j_1", "status": "RUNNING"})
    with pytest.raises(JobTimeoutError) as timed_out:
        WaitResult(Outcome.TIMEOUT, "j_1", running, "Deadline reached").raise_for_outcome()
    assert timed_out.value.last_status == "RUNNING"
    with pytest.raises(JobServiceError, match="HTTP 401"):
        WaitResult(Outcome.ERROR, "j_1", None, "HTTP 401").raise_for_outcome()
    done = Job.from_json({"id": "j_1", "status": "SUCCEEDED"})
    assert WaitResult(Outcome.SUCCESS, "j_1", done, "ok").raise_for_outcome() is done


def test_the_public_error_names_are_the_ones_raised() -> None:
    import jobservice_provider

    assert jobservice_provider.JobFailedError is JobFailedError
    assert jobservice_provider.JobTimeoutError is JobTimeoutError


# -- 10. the inputs' fingerprint ----------------------------------------------------------------------


def test_the_inputs_fingerprint_is_stable_and_tells_any_change() -> None:
    a = inputs_fingerprint("sleep", {"seconds": 1, "steps": 2}, {})
    assert a == inputs_fingerprint("sleep", {"steps": 2, "seconds": 1}, {})  # key order does not matter
    assert a != inputs_fingerprint("sleep", {"seconds": 2, "steps": 2}, {})
    assert a != inputs_fingerprint("python", {"seconds": 1, "steps": 2}, {})
    assert a != inputs_fingerprint("sleep", {"seconds": 1, "steps": 2}, {"team": "x"})
    assert inputs_key("airflow:d:t:r:-1", a) == f"airflow:d:t:r:-1:inputs-{a[:16]}"


# -- 11. stale_after ----------------------------------------------------------------------------------


class Scripted:
    """Answers with the record ``record(now)`` of the fake clock's time."""

    def __init__(self, clock: FakeClock, record: Callable[[float], dict[str, Any]]) -> None:
        self.clock, self.record, self.calls = clock, record, 0

    async def get_job(self, job_id: str) -> Job:
        self.calls += 1
        return Job.from_json({"id": job_id, **self.record(self.clock.now)})

    async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> Any:
        raise AssertionError("not used")

    async def cancel_job(self, job_id: str) -> Job:
        raise AssertionError("not used")


async def test_a_running_job_whose_record_stops_changing_is_stale_after_stale_after() -> None:
    clock = FakeClock()
    last_change = clock.now + 12  # progress moves every 3 s, then stops at 12 s

    def record(now: float) -> dict[str, Any]:
        step = int(min(now, last_change) - 1_000) // 3
        return {"status": "RUNNING", "version": 2 + step, "progress": {"completed": step}}

    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=2, jitter=0), stale_after=5)
    result = await wait_for_job(Scripted(clock, record), spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.STALE
    assert "is stale: still RUNNING" in result.message and "stale_after=5s" in result.message
    assert 5 <= clock.now - last_change <= 5 + 2  # within one poll interval of stale_after
    with pytest.raises(JobStaleError):
        result.raise_for_outcome()


async def test_a_job_that_keeps_changing_or_is_queued_is_never_stale() -> None:
    clock = FakeClock()

    def record(now: float) -> dict[str, Any]:
        elapsed = now - 1_000
        if elapsed < 20:
            return {"status": "QUEUED", "version": 1}  # queued for long: not stale
        if elapsed < 60:
            return {"status": "RUNNING", "version": 2 + int(elapsed) // 4}  # changes every 4 s
        return {"status": "SUCCEEDED", "version": 99}

    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=2, jitter=0), stale_after=5)
    result = await wait_for_job(Scripted(clock, record), spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.SUCCESS


async def test_a_job_that_hung_before_anyone_looked_is_stale_by_its_updated_at() -> None:
    start = pendulum.datetime(2026, 1, 1, 12).timestamp()
    clock = FakeClock(start=start)
    hung_since = pendulum.datetime(2026, 1, 1, 11)  # an hour without a change
    record = {"status": "RUNNING", "version": 7, "updated_at": hung_since.isoformat()}
    spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=2, jitter=0), stale_after=600)
    result = await wait_for_job(Scripted(clock, lambda _: record), spec, clock=clock, sleep=clock.sleep, rand=lambda: 0.5)
    assert result.outcome is Outcome.STALE and clock.now - start <= 2  # at the first look
