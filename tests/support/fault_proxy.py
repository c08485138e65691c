"""A fault-injecting HTTP proxy for tests: sits between the client and the real local service.

Each status request (``GET /v1/jobs/<id>``, or a batch ``GET /v1/jobs?id=…``) takes the next scripted fault;
when the script is empty, requests pass through. Other requests always pass through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from tests.support.shaping_proxy import ShapingProxy, network_is_shaped


@dataclasses.dataclass(frozen=True)
class Fault:
    """One scripted answer: an HTTP status (with headers/body), or ``reset`` mid-body."""

    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    reset: bool = False


def status(code: int, body: str = "", **headers: str) -> Fault:
    return Fault(status=code, body=body, headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()))


RESET = Fault(reset=True)


class FaultProxy:
    """``async with FaultProxy(upstream_url) as proxy``; ``proxy.url`` is what the client uses."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.script: deque[Fault] = deque()
        self.status_requests: list[float] = []  # monotonic times of status requests
        self.url = ""

    def add(self, *faults: Fault) -> None:
        self.script.extend(faults)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        single = request.path.startswith("/v1/jobs/") and request.path.count("/") == 3
        batch = request.path == "/v1/jobs" and "id" in request.query
        is_status = request.method == "GET" and (single or batch)
        if is_status:
            self.status_requests.append(time.monotonic())
            if self.script:
                fault = self.script.popleft()
                if fault.reset:
                    response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "400"})
                    await response.prepare(request)
                    await response.write(b'{"id": "j_')
                    assert request.transport is not None
                    request.transport.close()
                    return response
                return web.Response(status=fault.status, body=fault.body, headers=dict(fault.headers))
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers={
                k: v for k, v in request.headers.items() if k.lower() in ("authorization", "idempotency-key", "content-type")
            },
            data=await request.read(),
        ) as upstream:
            body = await upstream.read()
            return web.Response(
                status=upstream.status, body=body, headers={"Content-Type": upstream.headers.get("Content-Type", "")}
            )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FaultProxy]:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        # This proxy answers in one piece from loopback; in the shaped network mode the client must
        # still meet a segmenting, delaying network, so it reaches this proxy through a shaping one.
        shaper = ShapingProxy("127.0.0.1", port) if network_is_shaped() else None
        if shaper is not None:
            await asyncio.to_thread(shaper.start)
            self.url = shaper.url
        try:
            yield self
        finally:
            if shaper is not None:
                await asyncio.to_thread(shaper.stop)
            await runner.cleanup()
            await self._session.close()
            await asyncio.sleep(0)
