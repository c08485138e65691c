"""The shared watcher coalesces due checks into batch lookups and isolates waits from each other."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.errors import JobNotFoundError, PermanentError, TransientError
from jobservice_provider.core.job import Job
from jobservice_provider.core.watcher import Watcher, shared_watcher

CONFIG = ServiceConfig(base_url="http://127.0.0.1:9", conn_id="fake")


class FakeBatchClient:
    """Answers batch lookups from memory and records every request."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_with = fail_with

    class dialect:
        max_batch = 100

    async def get_jobs(self, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        self.batches.append(list(job_ids))
        if self.fail_with:
            raise self.fail_with
        found = [Job.from_json({"id": j, "status": "RUNNING"}) for j in job_ids if not j.startswith("gone")]
        return found, [j for j in job_ids if j.startswith("gone")]


async def started_watcher(client: FakeBatchClient, window: float = 0.5) -> Watcher:
    watcher = Watcher(CONFIG, window=window)
    watcher.client = client  # type: ignore[assignment]
    watcher._task = asyncio.create_task(watcher._run())
    return watcher


async def test_checks_due_together_go_out_in_batches_of_at_most_100() -> None:
    client = FakeBatchClient()
    watcher = await started_watcher(client)
    # 250 waits whose checks fall due within 0.3 s of each other, 3 s from now
    answers = await asyncio.gather(*(watcher.lookup(f"j{i}", 3.0 + (i % 30) / 100) for i in range(250)))
    await watcher.close()
    assert [a.id for a in answers] == [f"j{i}" for i in range(250)]
    assert len(client.batches) == 3 and max(map(len, client.batches)) == 100
    assert sorted(j for batch in client.batches for j in batch) == sorted(f"j{i}" for i in range(250))


async def test_checks_far_apart_are_not_merged_and_not_answered_much_early() -> None:
    client = FakeBatchClient()
    watcher = await started_watcher(client, window=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    times: dict[str, float] = {}

    async def timed(job_id: str, delay: float) -> None:
        await watcher.lookup(job_id, delay)
        times[job_id] = loop.time() - start

    await asyncio.gather(timed("early", 0.05), timed("late", 0.4))
    await watcher.close()
    assert client.batches == [["early"], ["late"]]
    assert times["late"] >= 0.4 - 0.025  # early by at most half the window


async def test_a_wait_polling_faster_than_the_window_keeps_its_pace() -> None:
    client = FakeBatchClient()
    watcher = await started_watcher(client, window=0.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await watcher.lookup("fast", 0.05)
    await watcher.close()
    assert loop.time() - start >= 5 * 0.05 * 0.9  # not answered back to back
    assert len(client.batches) == 5


async def test_a_cancelled_wait_leaves_the_others_alone_and_unknown_ids_fail_alone() -> None:
    client = FakeBatchClient()
    watcher = await started_watcher(client)
    leaving = watcher.lookup("leaving", 1.0)
    staying = watcher.lookup("staying", 1.0)
    gone = watcher.lookup("gone-1", 1.0)
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert (await staying).id == "staying"
    with pytest.raises(JobNotFoundError):
        await gone
    await watcher.close()
    assert client.batches == [["staying", "gone-1"]]


async def test_a_transient_failure_reaches_every_wait_in_the_batch_and_pauses_the_service() -> None:
    client = FakeBatchClient(fail_with=TransientError("HTTP 429", status=429, retry_after=0.3))
    watcher = await started_watcher(client, window=0.01)
    results = await asyncio.gather(*(watcher.lookup(f"j{i}", 0.0) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, TransientError) for r in results)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TransientError):
        await watcher.lookup("j0", 0.0)  # asked at once, but the service is paused for Retry-After
    assert loop.time() - start >= 0.25
    await watcher.close()
    assert len(client.batches) == 2


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
    assert first._task is not None and first._task.done()


class FakeWatchClient(FakeBatchClient):
    """Also watches: each watch request takes the next answer (or error) the test queues."""

    def __init__(self) -> None:
        super().__init__()
        self.watches: list[dict[str, int]] = []
        self.answers: asyncio.Queue[tuple[list[Job], list[str]] | Exception] = asyncio.Queue()

    class dialect:
        max_batch = 100
        max_watch = 10_000
        supports_watch = True

    async def get_jobs(self, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        self.batches.append(list(job_ids))
        return [Job.from_json({"id": j, "status": "RUNNING", "version": 1}) for j in job_ids], []

    async def watch(self, seen: dict[str, int], wait_s: float) -> tuple[list[Job], list[str]]:
        self.watches.append(dict(seen))
        answer = await self.answers.get()
        if isinstance(answer, Exception):
            raise answer
        return answer


async def watching_watcher(client: FakeWatchClient) -> Watcher:
    watcher = await started_watcher(client, window=0.01)
    watcher._watch_ok = True
    watcher._watch_task = asyncio.create_task(watcher._watch())
    return watcher


async def test_a_held_check_is_not_polled_and_is_answered_when_the_watch_reports_a_change() -> None:
    client = FakeWatchClient()
    watcher = await watching_watcher(client)
    watcher.register("j1")
    first = await watcher.lookup("j1", 0.0, True)  # the first look is always a lookup
    assert first.version == 1 and client.batches == [["j1"]]
    held = watcher.lookup("j1", 0.05, True)
    await asyncio.sleep(0.5)  # ten times the delay: a polled check would have been answered
    assert not held.done() and client.batches == [["j1"]] and client.watches == [{"j1": 1}]
    client.answers.put_nowait(([Job.from_json({"id": "j1", "status": "SUCCEEDED", "version": 2})], []))
    assert (await held).version == 2
    watcher.unregister("j1")
    await watcher.close()


async def test_a_failing_watch_sends_held_checks_back_to_polling() -> None:
    client = FakeWatchClient()
    watcher = await watching_watcher(client)
    watcher.register("j1")
    await watcher.lookup("j1", 0.0, True)
    held = watcher.lookup("j1", 0.05, True)
    await asyncio.sleep(0.2)
    assert not held.done()
    client.answers.put_nowait(PermanentError("HTTP 404: no such route"))
    assert (await asyncio.wait_for(held, 2)).version == 1  # polled instead
    assert client.batches == [["j1"], ["j1"]]
    # While the watch is down, checks are polled on their own schedule, not held.
    assert (await asyncio.wait_for(watcher.lookup("j1", 0.05, True), 2)).version == 1
    watcher.unregister("j1")
    await watcher.close()
