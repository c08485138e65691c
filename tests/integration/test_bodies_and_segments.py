"""Bodies from 2 KB to 5 MB, long listings, batches and logs against the real local service, and the
shaping proxy that makes them arrive the way a real network delivers them.

Run in both network modes (``JOBSERVICE_TEST_NETWORK=direct|shaped``, see ``docs/testing.md``):
in the shaped one every answer reaches the client in 1,400-byte segments, which is what a client
that trusts a single ``read(n)`` cannot survive; ``carried_in_segments`` checks that it really did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from airflow.sdk.exceptions import TaskDeferred
from tests.conftest import conn_json
from tests.support.airflow_context import make_context
from tests.support.dag_test import run_trigger
from tests.support.fault_proxy import FaultProxy
from tests.support.local_service import LocalService
from tests.support.shaping_proxy import Shape, ShapingProxy, network_is_shaped

from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.errors import JobServiceError, PermanentError
from jobservice_provider.core.policy import PollPolicy
from jobservice_provider.core.status import JobStatus
from jobservice_provider.core.wait import WaitSpec
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.triggers.jobservice import JobStatusTrigger

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
# A body that can never be read whole must fail the test with its error, not be retried for the
# default budget of ten minutes.
BUDGET = 20
FAST = PollPolicy(interval=0.3)


@pytest.fixture(autouse=True)
def default_connection(local_service: LocalService, monkeypatch: pytest.MonkeyPatch) -> LocalService:
    monkeypatch.setenv(
        "AIRFLOW_CONN_JOBSERVICE_DEFAULT",
        conn_json(local_service.base_url, local_service.token, poll_interval=0.3, transient_error_budget=BUDGET),
    )
    return local_service


def text_of(size: int) -> str:
    """``size`` characters of numbered 8-digit groups: a lost, doubled or reordered segment shows."""
    groups = "".join(f"{i:08d}" for i in range(size // 8 + 1))
    return groups[:size]


def config_for(service: LocalService) -> ServiceConfig:
    return ServiceConfig.from_connection_fields(conn_id="bodies", host=service.base_url, password=service.token)


@contextlib.contextmanager
def carried_in_segments(service: LocalService, at_least: int) -> Iterator[None]:
    """In the shaped mode, check that at least ``at_least`` bytes went from the service to the
    client inside the block, cut into segments of at most the shape's size (direct mode: no check)."""
    shaper = service.shaper
    if shaper is None:
        yield
        return
    before = shaper.counters()
    yield
    after = shaper.counters()
    sent = after.bytes_to_client - before.bytes_to_client
    segments = after.segments_to_client - before.segments_to_client
    assert sent >= at_least, f"only {sent} bytes went through the shaping proxy, expected at least {at_least}"
    assert segments >= sent / shaper.shape.segment_bytes, f"{sent} bytes in only {segments} segments"


# -- bodies up and down ---------------------------------------------------------------------
@pytest.mark.parametrize("size", [2 * 1024, MiB], ids=["2KB", "1MiB"])
def test_params_of_2_kb_and_1_mib_round_trip(local_service: LocalService, size: int) -> None:
    payload = text_of(size)
    hook = JobServiceHook()
    # Up: the params; down: the submit's answer (the record echoes them), a status and the result.
    with carried_in_segments(local_service, at_least=3 * size):
        job = hook.submit(SubmitRequest("sleep", {"seconds": 0, "result": payload}))
        waited = hook.wait_for_job(WaitSpec(job_id=job.id, poll=FAST), check_now=True)
        result = hook.get_result(job.id)
    assert waited.job is not None and waited.job.status is JobStatus.SUCCEEDED, waited.message
    assert result == payload


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_a_5_mib_result_reaches_the_operator(local_service: LocalService, deferrable: bool) -> None:
    result = {"rows": text_of(5 * MiB)}
    op = SubmitAndWaitOperator(
        task_id="big_result",
        job_type="sleep",
        job_params={"seconds": 0.5, "result": result},
        poll_interval=0.3,
        deferrable=deferrable,
        max_result_bytes=6 * MiB,
    )
    context = make_context()
    # The submit's answer echoes the 5 MiB params and the result is 5 MiB: at least 10 MiB down.
    with carried_in_segments(local_service, at_least=10 * MiB):
        if deferrable:
            with pytest.raises(TaskDeferred) as deferred:
                op.execute(context)
            event = run_trigger(deferred.value.trigger)
            assert event["status"] == "success", event
            assert len(json.dumps(event)) < 4096  # the event names the job; the 5 MiB stay out of it
            returned = op.execute_complete(context, event)
        else:
            returned = op.execute(context)
    assert returned == result
    assert context["ti"].xcom["job_id"] == op.job_id


# -- many jobs at once ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def many_jobs(local_service: LocalService) -> tuple[str, list[str]]:
    """450 finished sleep jobs with ~1 KB params each, created after the returned timestamp."""
    created_after = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    async def submit_all() -> list[str]:
        limit = asyncio.Semaphore(16)
        async with JobServiceClient(config_for(local_service)) as client:

            async def one(i: int) -> str:
                async with limit:
                    return (
                        await client.submit(SubmitRequest("sleep", {"seconds": 0, "result": {"i": i, "pad": text_of(1000)}}))
                    ).id

            return list(await asyncio.gather(*(one(i) for i in range(450))))

    return created_after, asyncio.run(submit_all())


def test_listing_400_jobs_in_one_long_answer(local_service: LocalService, many_jobs: tuple[str, list[str]]) -> None:
    created_after, ids = many_jobs
    with carried_in_segments(local_service, at_least=400 * 1000):
        listed = list(JobServiceHook().list_jobs(ListQuery(created_after=created_after, limit=400)))
    assert len(listed) == 400 and len({job.id for job in listed}) == 400
    assert {job.id for job in listed} <= set(ids)


async def test_150_ids_are_looked_up_in_two_batches(
    local_service: LocalService, many_jobs: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ids = many_jobs
    wanted = ids[:150]
    # The fault proxy, with no faults scripted, counts the batch lookups that pass through it.
    async with FaultProxy(local_service.base_url).running() as proxy:
        monkeypatch.setenv("AIRFLOW_CONN_COUNTED", conn_json(proxy.url, local_service.token, transient_error_budget=BUDGET))
        # The sync face runs its own loop; a worker thread keeps this one free to serve the proxy.
        found = await asyncio.to_thread(JobServiceHook("counted").get_jobs, wanted)
    assert [job.id for job in found] == wanted
    assert len(proxy.status_requests) == 2  # 100 + 50


def test_a_long_log_is_read_whole_in_order(local_service: LocalService) -> None:
    lines = 20_000
    program = f"for i in range({lines}):\n    print(f'line {{i:05d}} ' + 'y' * 60)\n"
    hook = JobServiceHook()
    job = hook.submit(SubmitRequest("command", {"argv": [sys.executable, "-c", program]}))
    waited = hook.wait_for_job(WaitSpec(job_id=job.id, poll=FAST), check_now=True)
    assert waited.job is not None and waited.job.status is JobStatus.SUCCEEDED, waited.message
    parts: list[str] = []
    offset = 0
    with carried_in_segments(local_service, at_least=lines * 72):
        while True:
            chunk = hook.get_logs(job.id, offset)
            parts.append(chunk.data)
            offset = chunk.next_offset
            if chunk.complete:
                break
    printed = [line for line in "".join(parts).splitlines() if line.startswith("line ")]
    assert printed == [f"line {i:05d} " + "y" * 60 for i in range(lines)]
    assert len(parts) > 1  # the service hands a long log out in chunks, and every one was read


def test_twelve_deferred_waits_in_one_event_loop(local_service: LocalService) -> None:
    hook = JobServiceHook()
    jobs = [
        hook.submit(SubmitRequest("sleep", {"seconds": 0.5 + 0.1 * i, "steps": 3, "result": {"i": i, "pad": text_of(100_000)}}))
        for i in range(12)
    ]
    triggers = [JobStatusTrigger(job_id=job.id, poll_policy={"interval": 0.3}, retry_policy={"budget": BUDGET}) for job in jobs]

    async def all_first_events() -> list[dict[str, Any]]:
        # As the triggerer does: every trigger rebuilt from its serialized kwargs, all in one loop.
        rebuilt = [JobStatusTrigger(**trigger.serialize()[1]) for trigger in triggers]
        return [event.payload for event in await asyncio.gather(*(anext(t.run()) for t in rebuilt))]

    # Each record carries ~100 KB of params, so the shared status answers are large as well.
    with carried_in_segments(local_service, at_least=12 * 100_000):
        events = asyncio.run(all_first_events())
    assert [event["status"] for event in events] == ["success"] * 12, [e["message"] for e in events]
    assert [event["job_id"] for event in events] == [job.id for job in jobs]


# -- the cap ------------------------------------------------------------------------------------
def test_a_body_over_max_response_bytes_fails_naming_the_cap(
    local_service: LocalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = JobServiceHook()
    small = hook.submit(SubmitRequest("sleep", {"seconds": 0}))
    big = hook.submit(SubmitRequest("sleep", {"seconds": 0, "result": text_of(5000)}))
    assert hook.wait_for_job(WaitSpec(job_id=big.id, poll=FAST), check_now=True).outcome.value == "success"
    monkeypatch.setenv("AIRFLOW_CONN_SMALL_CAP", conn_json(local_service.base_url, local_service.token, max_response_bytes=1000))
    capped = JobServiceHook("small_cap")
    assert capped.get_job(small.id).id == small.id  # a record of a few hundred bytes is under the cap
    with pytest.raises(JobServiceError) as result_error:
        capped.get_result(big.id)
    with pytest.raises(JobServiceError) as listing_error:
        list(capped.list_jobs(ListQuery(limit=50)))
    for error in (result_error.value, listing_error.value):
        assert isinstance(error, PermanentError), repr(error)  # the same call would bring the same body
        assert "larger than 1000 bytes" in str(error) and "max_response_bytes" in str(error), str(error)


# -- the shaping proxy itself -------------------------------------------------------------------
@contextlib.asynccontextmanager
async def http_server(routes: web.RouteTableDef, port: int = 0) -> AsyncIterator[int]:
    """A real aiohttp server on 127.0.0.1 in this loop; yields its port."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def raw_get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[bytes, int, float]:
    """One ``Connection: close`` GET on a bare socket: (everything received, how many reads it
    took, seconds until the first byte)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    sent = time.monotonic()
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    received: list[bytes] = []
    first_byte = 0.0
    while data := await reader.read(1 << 20):
        first_byte = first_byte or time.monotonic() - sent
        received.append(data)
    writer.close()
    await writer.wait_closed()
    return b"".join(received), len(received), first_byte


async def test_the_shaping_proxy_cuts_a_100_kb_body_into_segments() -> None:
    body = text_of(100_000).encode()
    routes = web.RouteTableDef()

    @routes.get("/big")
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=body)

    shape = Shape(segment_gap=0.002)
    async with http_server(routes) as port:
        proxy = ShapingProxy("127.0.0.1", port, shape)
        await asyncio.to_thread(proxy.start)
        try:
            received, reads, first_byte = await raw_get(proxy.url, "/big")
        finally:
            await asyncio.to_thread(proxy.stop)
    assert received.endswith(b"\r\n\r\n" + body)
    counters = proxy.counters()
    assert counters.connections == 1 and counters.chunks_to_server == 1
    assert counters.bytes_to_client == len(received)
    assert counters.segments_to_client >= len(received) / 1400
    assert reads >= 20, f"the 100 KB body arrived in only {reads} reads"
    assert first_byte >= shape.latency  # the request was held before it reached the server


async def test_the_shaping_proxy_passes_keep_alive_and_chunked_answers_through() -> None:
    routes = web.RouteTableDef()

    @routes.get("/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in range(3):
            await response.write(text_of(5000).encode() + str(piece).encode())
        await response.write_eof()
        return response

    async with http_server(routes) as port:
        with ShapingProxy("127.0.0.1", port) as proxy:
            async with aiohttp.ClientSession() as session:
                bodies = []
                for _ in range(3):
                    async with session.get(proxy.url + "/stream") as response:
                        assert response.headers["Transfer-Encoding"] == "chunked"
                        bodies.append(await response.read())
            counters = proxy.counters()
    assert bodies == [b"".join(text_of(5000).encode() + str(p).encode() for p in range(3))] * 3
    assert counters.connections == 1  # three requests on one kept-alive connection


async def test_the_shaping_proxy_survives_its_upstream_going_away_and_coming_back() -> None:
    routes = web.RouteTableDef()

    @routes.get("/ping")
    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    upstream = contextlib.AsyncExitStack()
    port = await upstream.enter_async_context(http_server(routes))
    proxy = ShapingProxy("127.0.0.1", port)
    await asyncio.to_thread(proxy.start)
    try:
        first, _, _ = await raw_get(proxy.url, "/ping")
        await upstream.aclose()  # the upstream goes away; the proxy keeps listening
        down, _, _ = await raw_get(proxy.url, "/ping")
        async with http_server(routes, port=port):
            back, _, _ = await raw_get(proxy.url, "/ping")
    finally:
        await upstream.aclose()
        await asyncio.to_thread(proxy.stop)
    assert first.endswith(b"pong") and back.endswith(b"pong")
    assert down == b""  # closed before any answer, as a refused upstream looks through a proxy
    counters = proxy.counters()
    assert counters.connections == 3 and counters.upstream_unreachable == 1


def test_a_restarted_local_service_keeps_its_url(tmp_path: Path) -> None:
    async def health(url: str, token: str | None) -> dict[str, Any]:
        config = ServiceConfig.from_connection_fields(conn_id="restarted", host=url, password=token)
        async with JobServiceClient(config) as client:
            return await client.health()

    with LocalService(tmp_path) as service:
        url = service.base_url
        assert asyncio.run(health(url, service.token))["status"] == "ok"
        service.restart()
        assert service.base_url == url
        assert asyncio.run(health(url, service.token))["status"] == "ok"
        if service.shaper is not None:
            assert service.shaper.counters().connections >= 2


async def test_the_network_mode_is_the_one_announced(local_service: LocalService) -> None:
    """Shaped mode cannot silently fall back to loopback: the session's service and the fault
    proxy's URL both deliver a 100 KB record in many segments."""
    if not network_is_shaped():
        assert local_service.shaper is None and local_service.base_url == local_service.direct_url
        return
    shaper = local_service.shaper
    assert shaper is not None and shaper.running and local_service.base_url == shaper.url != local_service.direct_url
    async with JobServiceClient(config_for(local_service)) as client:
        job = await client.submit(SubmitRequest("sleep", {"seconds": 0, "result": text_of(100_000)}))
    before = shaper.counters()
    record, reads, _ = await raw_get(local_service.base_url, f"/v1/jobs/{job.id}", local_service.headers)
    after = shaper.counters()
    assert record.startswith(b"HTTP/1.1 200") and len(record) > 100_000
    assert after.connections == before.connections + 1
    assert after.segments_to_client - before.segments_to_client >= len(record) / 1400
    assert reads >= 10, f"a 100 KB record arrived in only {reads} reads through the session's service"
    async with FaultProxy(local_service.base_url).running() as proxy:
        record, reads, _ = await raw_get(proxy.url, f"/v1/jobs/{job.id}", local_service.headers)
    assert record.startswith(b"HTTP/1.1 200") and len(record) > 100_000
    assert reads >= 10, f"a 100 KB record arrived in only {reads} reads through the fault proxy"
