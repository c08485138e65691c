"""The shared watcher: coalesced checks, isolation between waits, bounded pauses, no hangs.

The client is injected (a fake answering from memory); every test goes through the public
subscription API, as the trigger does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest

from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.errors import JobNotFoundError, JobServiceError, PermanentError, TransientError
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import RetryPolicy
from jobservice_provider.core.schedule import Unchanged
from jobservice_provider.core.watcher import Watcher, shared_watcher

CONFIG = ServiceConfig(base_url="http://127.0.0.1:9", conn_id="fake")


class FakeBatchClient:
    """Answers batch lookups from memory and records every request.

    :param fail_with: raised by every batch (or by the batches ``fail_when`` picks).
    """

    max_batch = 100
    max_watch = 0  # no watch

    def __init__(self, fail_with: BaseException | None = None, fail_when: Callable[[list[str]], bool] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_with = fail_with
        self.fail_when = fail_when or (lambda ids: True)

    async def get_jobs(self, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        self.batches.append(list(job_ids))
        if self.fail_with is not None and self.fail_when(list(job_ids)):
            raise self.fail_with
        found = [Job.from_json({"id": j, "status": "RUNNING", "version": 1}) for j in job_ids if not j.startswith("gone")]
        return found, [j for j in job_ids if j.startswith("gone")]


@asynccontextmanager
async def watching(client: FakeBatchClient, window: float = 0.5) -> AsyncIterator[Watcher]:
    watcher = Watcher(CONFIG, client=client, window=window, rand=lambda: 0.5)
    await watcher.open()
    try:
        yield watcher
    finally:
        await watcher.close()


async def check(watcher: Watcher, job_id: str, delay: float, retry: RetryPolicy | None = None) -> Job:
    async with watcher.subscribe(job_id, retry) as subscription:
        return await subscription.check(delay)


async def test_checks_due_together_go_out_in_batches_of_at_most_100() -> None:
    client = FakeBatchClient()
    async with watching(client) as watcher:
        # 250 waits whose checks fall due within 0.3 s of each other, 3 s from now
        answers = await asyncio.gather(*(check(watcher, f"j{i}", 3.0 + (i % 30) / 100) for i in range(250)))
    assert [a.id for a in answers] == [f"j{i}" for i in range(250)]
    assert len(client.batches) == 3 and max(map(len, client.batches)) == 100
    assert sorted(j for batch in client.batches for j in batch) == sorted(f"j{i}" for i in range(250))


async def test_checks_far_apart_are_not_merged_and_not_answered_much_early() -> None:
    client = FakeBatchClient()
    async with watching(client, window=0.05) as watcher:
        loop = asyncio.get_running_loop()
        start = loop.time()
        times: dict[str, float] = {}

        async def timed(job_id: str, delay: float) -> None:
            await check(watcher, job_id, delay)
            times[job_id] = loop.time() - start

        await asyncio.gather(timed("early", 0.05), timed("late", 0.4))
    assert client.batches == [["early"], ["late"]]
    assert times["late"] >= 0.4 - 0.025  # early by at most half the window


async def test_a_wait_polling_faster_than_the_window_keeps_its_pace() -> None:
    client = FakeBatchClient()
    async with watching(client, window=0.5) as watcher, watcher.subscribe("fast") as subscription:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(5):
            await subscription.check(0.05)
        assert loop.time() - start >= 5 * 0.05 * 0.9  # not answered back to back
    assert len(client.batches) == 5


async def test_a_withdrawn_check_leaves_the_others_alone_and_unknown_ids_fail_alone() -> None:
    client = FakeBatchClient()
    async with (
        watching(client) as watcher,
        watcher.subscribe("leaving") as leaving_sub,
        watcher.subscribe("staying") as staying_sub,
        watcher.subscribe("gone-1") as gone_sub,
    ):
        leaving = leaving_sub.check(1.0)
        staying = staying_sub.check(1.0)
        gone = gone_sub.check(1.0)
        await asyncio.sleep(0.01)
        leaving.cancel()
        assert (await staying).id == "staying"
        with pytest.raises(JobNotFoundError):
            await gone
    assert client.batches == [["staying", "gone-1"]]


async def test_a_transient_failure_reaches_every_wait_in_the_batch_and_pauses_the_service() -> None:
    client = FakeBatchClient(fail_with=TransientError("HTTP 429", status=429, retry_after=0.3))
    policy = RetryPolicy(base=0.05, cap=1.0)
    async with watching(client, window=0.01) as watcher:
        results = await asyncio.gather(*(check(watcher, f"j{i}", 0.0, policy) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, TransientError) for r in results)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TransientError):
            await check(watcher, "j0", 0.0, policy)  # asked at once, but the service is paused for Retry-After
        assert loop.time() - start >= 0.25
    assert len(client.batches) == 2


async def test_a_huge_retry_after_pauses_no_longer_than_the_waits_retry_cap() -> None:
    client = FakeBatchClient(fail_with=TransientError("HTTP 429", status=429, retry_after=999999.0))
    policy = RetryPolicy(base=0.05, cap=0.3)
    async with watching(client, window=0.01) as watcher:
        with pytest.raises(TransientError):
            await check(watcher, "j0", 0.0, policy)
        client.fail_with = None  # the service recovers
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert (await asyncio.wait_for(check(watcher, "j1", 0.0, policy), 5)).id == "j1"
        assert loop.time() - start <= 0.3 + 0.1  # the cap, not 999999 s


async def test_retry_after_zero_never_becomes_a_tight_loop() -> None:
    client = FakeBatchClient(fail_with=TransientError("HTTP 429", status=429, retry_after=0.0))
    policy = RetryPolicy(base=0.1, cap=0.4, jitter=0.0)
    async with watching(client, window=0.01) as watcher:
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        while loop.time() < end:
            with pytest.raises(TransientError):
                await check(watcher, "j", 0.0, policy)  # a wait that asks again at once, every time
    # paused 0.1, 0.2, 0.4, 0.4 … s between requests, whatever the service's Retry-After: 0
    assert 3 <= len(client.batches) <= 6, len(client.batches)


async def test_a_bug_in_a_batch_lookup_fails_only_the_waits_it_concerns_naming_the_exception() -> None:
    client = FakeBatchClient(fail_with=KeyError("status"), fail_when=lambda ids: "poison" in ids)
    async with watching(client, window=0.5) as watcher:
        poisoned, healthy = await asyncio.gather(
            check(watcher, "poison", 0.2), check(watcher, "fine", 0.2), return_exceptions=True
        )
        assert isinstance(poisoned, JobServiceError) and "KeyError" in str(poisoned) and "poison" in str(poisoned)
        assert isinstance(healthy, Job) and healthy.id == "fine"
        # The watcher carries on for later waits.
        assert (await asyncio.wait_for(check(watcher, "later", 0.0), 2)).id == "later"
    assert client.batches[0] == ["poison", "fine"] and ["poison"] in client.batches and ["fine"] in client.batches


@pytest.mark.parametrize("error", [ValueError("header value contains CR/LF"), RuntimeError("dialect bug")])
async def test_any_exception_in_every_batch_becomes_an_error_for_each_wait_never_a_hang(error: Exception) -> None:
    client = FakeBatchClient(fail_with=error)
    async with watching(client, window=0.05) as watcher:
        results = await asyncio.wait_for(
            asyncio.gather(*(check(watcher, f"j{i}", 0.1) for i in range(5)), return_exceptions=True), timeout=2
        )
    assert all(isinstance(r, JobServiceError) and type(error).__name__ in str(r) for r in results), results


async def test_one_watcher_per_service_per_loop_closed_after_the_last_user() -> None:
    async with shared_watcher(CONFIG) as first, shared_watcher(CONFIG) as second:
        assert first is second
        other = ServiceConfig(base_url="http://127.0.0.1:10", conn_id="other")
        async with shared_watcher(other) as third:
            assert third is not first
        # The connection read again with a new token: the same watcher sends it from now on.
        rotated = ServiceConfig(base_url="http://127.0.0.1:9", conn_id="fake", token="rotated-token")
        async with shared_watcher(rotated) as fourth:
            assert fourth is first and first.client.config.token == "rotated-token"
    async with shared_watcher(CONFIG) as fresh:
        assert fresh is not first  # the first one closed with its last user


class FakeWatchClient(FakeBatchClient):
    """Also watches: each watch request takes the next answer (or error) the test queues."""

    max_watch = 10_000

    def __init__(self) -> None:
        super().__init__()
        self.watches: list[dict[str, int]] = []
        self.answers: asyncio.Queue[tuple[list[Job], list[str]] | BaseException] = asyncio.Queue()

    async def watch(self, seen: dict[str, int], wait_s: float) -> tuple[list[Job], list[str]]:
        self.watches.append(dict(seen))
        answer = await self.answers.get()
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def test_a_held_check_is_not_polled_and_is_answered_when_the_watch_reports_a_change() -> None:
    client = FakeWatchClient()
    async with watching(client, window=0.01) as watcher, watcher.subscribe("j1") as subscription:
        first = await subscription.check(0.0, True)  # the first look is always a lookup
        assert first.version == 1 and client.batches == [["j1"]]
        held = subscription.check(0.05, True)
        await asyncio.sleep(0.5)  # ten times the delay: a polled check would have been answered
        assert not held.done() and client.batches == [["j1"]] and client.watches == [{"j1": 1}]
        client.answers.put_nowait(([Job.from_json({"id": "j1", "status": "SUCCEEDED", "version": 2})], []))
        assert (await held).version == 2


async def test_a_watch_answer_for_a_job_it_did_not_list_is_never_taken_for_it() -> None:
    client = FakeWatchClient()
    async with watching(client, window=0.01) as watcher, watcher.subscribe("j1") as subscription:
        await subscription.check(0.0, True)
        held = subscription.check(0.05, True)
        await asyncio.sleep(0.2)
        client.answers.put_nowait(([Job.from_json({"id": "intruder", "status": "SUCCEEDED", "version": 9})], []))
        await asyncio.sleep(0.2)
        assert not held.done()


@pytest.mark.parametrize("error", [PermanentError("HTTP 404: no such route"), KeyError("seen")])
async def test_a_failing_watch_sends_held_checks_back_to_polling(error: BaseException) -> None:
    client = FakeWatchClient()
    async with watching(client, window=0.01) as watcher, watcher.subscribe("j1") as subscription:
        await subscription.check(0.0, True)
        held = subscription.check(0.05, True)
        await asyncio.sleep(0.2)
        assert not held.done()
        client.answers.put_nowait(error)
        assert (await asyncio.wait_for(held, 2)).version == 1  # polled instead
        assert client.batches == [["j1"], ["j1"]]
        # While the watch is down, checks are polled on their own schedule, not held.
        assert (await asyncio.wait_for(subscription.check(0.05, True), 2)).version == 1


async def test_a_successful_watch_ends_a_pause_at_once() -> None:
    client = FakeWatchClient()
    async with watching(client, window=0.01) as watcher, watcher.subscribe("j1", RetryPolicy(cap=30)) as subscription:
        await subscription.check(0.0, True)  # j1 joins; the watch lists it
        await asyncio.sleep(0.05)
        client.fail_with = TransientError("HTTP 503", status=503, retry_after=20.0)
        async with watcher.subscribe("j2", RetryPolicy(cap=30)) as other:
            with pytest.raises(TransientError):
                await other.check(0.0)  # the service is now paused for 20 s
            client.fail_with = None
            loop = asyncio.get_running_loop()
            start = loop.time()
            pending = asyncio.ensure_future(other.check(0.0))
            await asyncio.sleep(0.1)
            assert not pending.done()
            client.answers.put_nowait(([], []))  # the open watch returns: the service works again
            assert (await asyncio.wait_for(pending, 2)).id == "j2"
            assert loop.time() - start < 1.5


async def test_an_answer_for_a_check_its_waiter_gave_up_on_is_dropped_and_the_watcher_goes_on() -> None:
    client = FakeWatchClient()
    async with watching(client, window=0.01) as watcher, watcher.subscribe("j1") as subscription:
        await subscription.check(0.0, True)
        held = subscription.check(0.05, True)
        await asyncio.sleep(0.2)
        held.cancel()  # the wait's deadline came first
        client.answers.put_nowait(([Job.from_json({"id": "j1", "status": "RUNNING", "version": 2})], []))
        await asyncio.sleep(0.1)
        assert held.cancelled()
        client.answers.put_nowait(([Job.from_json({"id": "j1", "status": "SUCCEEDED", "version": 3})], []))
        assert (await asyncio.wait_for(subscription.check(0.05, True), 2)).version == 3


async def test_closing_ends_the_poller_even_when_it_is_woken_in_the_same_moment() -> None:
    """The last wait leaving closes the watcher. If something woke the poller in the same loop
    iteration (a check added or withdrawn), Python 3.11's ``asyncio.wait_for`` returned the wake-up
    and swallowed the cancel: the poller ran on and the closing wait hung for good (seen as a
    300 s hang of 120 cancelled waits under load)."""
    client = FakeBatchClient()
    watcher = Watcher(CONFIG, client=client, window=0.5, rand=lambda: 0.5)
    await watcher.open()
    async with watcher.subscribe("j1") as subscription:
        far = asyncio.ensure_future(subscription.check(60.0))  # the poller now sleeps with a timeout
        await asyncio.sleep(0.05)
        far.cancel()
    [poller] = [task for task in watcher._tasks if "poller" in task.get_name()]
    watcher._changed.set()  # wakes the poller's wait ...
    await asyncio.sleep(0)  # ... whose inner wait finishes in this iteration
    closing = asyncio.ensure_future(watcher.close())  # and the cancel lands in the same one
    done, _ = await asyncio.wait([closing], timeout=2.0)
    assert closing in done, "close() hung: the poller swallowed its cancel"
    assert poller.cancelled()


class ScriptedBatchClient(FakeBatchClient):
    """Answers each batch lookup of a job with the next of its scripted records (the last one repeats)."""

    def __init__(self, script: list[dict[str, object]]) -> None:
        super().__init__()
        self.script = script

    async def get_jobs(self, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        self.batches.append(list(job_ids))
        record = self.script[min(len(self.batches), len(self.script)) - 1]
        return [Job.from_json({"id": j, **record}) for j in job_ids], []


async def test_a_check_that_finds_its_job_unchanged_checks_again_without_waking_the_wait() -> None:
    """Most checks of a long job find it as it was; the wait hears of the first that does not.
    Each check still keeps the wait's own schedule (next_delay), and changes the wait does not act
    on (a meta field) wake nobody."""
    running = {"status": "RUNNING", "version": 2}
    client = ScriptedBatchClient([running, running, {**running, "meta": {"heartbeat": 2}}, {"status": "SUCCEEDED", "version": 3}])
    async with watching(client, window=0.02) as watcher:
        loop = asyncio.get_running_loop()
        last = Job.from_json({"id": "j1", **running})
        delays: list[float] = []

        def next_delay() -> float:
            delays.append(0.2)
            return 0.2

        started = loop.time()
        async with watcher.subscribe("j1") as subscription:
            job = await subscription.check(0.2, unchanged=Unchanged(last, next_delay))
        elapsed = loop.time() - started
    assert job.raw_status == "SUCCEEDED"  # one answer, the change
    assert len(client.batches) == 4 and len(delays) == 3  # four checks, the wait woke for none but the last
    assert 0.7 < elapsed < 1.5, elapsed  # on the wait's schedule: 4 × 0.2 s
    assert watcher.schedule.checks_added == 4


async def test_an_unchanged_job_is_handed_over_when_the_next_check_would_pass_the_horizon() -> None:
    """The wait has its own business at the horizon (a log read, the job going stale): the last
    check before it is answered even though the job did not change."""
    running = {"status": "RUNNING", "version": 2}
    client = ScriptedBatchClient([running])
    async with watching(client, window=0.02) as watcher:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with watcher.subscribe("j1") as subscription:
            last = Job.from_json({"id": "j1", **running})
            job = await subscription.check(0.2, unchanged=Unchanged(last, lambda: 0.2, horizon=0.7))
        elapsed = loop.time() - started
    assert job.raw_status == "RUNNING"
    assert len(client.batches) == 3 and 0.5 < elapsed < 0.7, (client.batches, elapsed)  # at 0.2, 0.4, 0.6: 0.8 is past 0.7


async def test_a_withdrawn_recheck_is_never_sent() -> None:
    running = {"status": "RUNNING", "version": 2}
    client = ScriptedBatchClient([running])
    async with watching(client, window=0.02) as watcher:
        async with watcher.subscribe("j1") as subscription:
            last = Job.from_json({"id": "j1", **running})
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):  # the wait's deadline
                    await subscription.check(0.2, unchanged=Unchanged(last, lambda: 0.2))
        sent = len(client.batches)
        await asyncio.sleep(0.6)
    assert sent == 2 and len(client.batches) == 2  # the check due at 0.6 s was dropped with its waiter
