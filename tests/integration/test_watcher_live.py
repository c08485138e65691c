"""The shared watcher against the real local service: batched checks and long-poll."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import SubmitRequest
from jobservice_provider.core.policy import PollPolicy
from jobservice_provider.core.wait import Outcome, WaitSpec, wait_for_job
from jobservice_provider.core.watcher import shared_watcher

pytestmark = pytest.mark.integration


def config_for(service: Any) -> ServiceConfig:
    return ServiceConfig.from_connection_fields(conn_id="live", host=service.base_url, password=service.token)


async def test_long_poll_sees_completion_long_before_the_next_poll(local_service: Any) -> None:
    config = config_for(local_service)
    async with JobServiceClient(config) as client:
        job = await client.submit(SubmitRequest("sleep", {"seconds": 2}))
        async with shared_watcher(config) as watcher, watcher.subscribe(job.id) as subscription:
            started = time.monotonic()
            spec = WaitSpec(job_id=job.id, poll=PollPolicy(interval=60))
            result = await wait_for_job(client, spec, check_now=True, lookup=subscription.check)
            elapsed = time.monotonic() - started
    assert result.outcome is Outcome.SUCCESS
    assert elapsed < 4, elapsed  # polling alone would look again only after ~60 s


async def test_watched_waits_are_not_polled_while_the_watch_is_open(local_service: Any) -> None:
    config = config_for(local_service)
    async with JobServiceClient(config) as client:
        jobs = [await client.submit(SubmitRequest("sleep", {"seconds": 10})) for _ in range(150)]
        lookups = 0
        async with shared_watcher(config) as watcher:

            async def wait(job_id: str) -> Any:
                async with watcher.subscribe(job_id) as subscription:

                    async def counted(delay: float, hold: bool, unchanged: Any) -> Any:
                        nonlocal lookups
                        lookups += 1
                        return await subscription.check(delay, hold, unchanged)

                    return await wait_for_job(client, WaitSpec(job_id=job_id, poll=PollPolicy(interval=0.5)), lookup=counted)

            results = await asyncio.gather(*(wait(j.id) for j in jobs))
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 150
    # Polling every 0.5 s for ~10 s takes ~20 checks per wait. A job is polled only until
    # the watch lists it (a couple of seconds); then its checks wait for the watch to
    # report a change.
    assert lookups <= 150 * 8, lookups


async def test_many_waits_share_few_batch_requests(local_service: Any) -> None:
    config = config_for(local_service)
    async with JobServiceClient(config) as client:
        # Submitted together, so that on a slow network the first jobs do not end before the last start.
        jobs = await asyncio.gather(*(client.submit(SubmitRequest("sleep", {"seconds": 3})) for _ in range(150)))
        wake_ups = 0

        async with shared_watcher(config) as watcher:
            spec = PollPolicy(interval=0.5)

            async def wait(job_id: str) -> Any:
                async with watcher.subscribe(job_id) as subscription:

                    async def counted(delay: float, hold: bool, unchanged: Any) -> Any:
                        nonlocal wake_ups
                        wake_ups += 1
                        return await subscription.check(delay, False, unchanged)  # never held: every check is polled

                    return await wait_for_job(client, WaitSpec(job_id=job_id, poll=spec), lookup=counted)

            results = await asyncio.gather(*(wait(j.id) for j in jobs))
            requests = watcher.requests_sent
            polls = watcher.schedule.checks_added
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 150
    assert polls >= 150 * 4 and requests * 10 <= polls, (polls, requests)
    # A wait wakes when its job changes (queued, running, done), not for every check that finds it as it was.
    assert wake_ups <= 150 * 4 < polls, (wake_ups, polls)
