"""A fault-injecting HTTP proxy for tests: sits between the client and the real local service.

Requests are sorted into routes (:func:`route_of`: ``status`` for ``GET /v1/jobs/<id>`` and the
batch ``GET /v1/jobs?id=…``, ``result``, ``logs``, ``cancel``, ``submit``, ``watch``, ``list``,
``health``). Each request takes the next fault scripted for its route (``add``), or the fault of a
time window open on its route (``fail_for``); otherwise it passes through. Every request is
counted per route, so tests assert exact numbers. ``running()`` serves in the test's event loop;
``threaded()`` in a thread of its own, for sync code (hooks and operators on a "worker").
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

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


def route_of(method: str, path: str, query: Mapping[str, str]) -> str:
    """Which kind of call a request to the native API is."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["v1", "jobs"]:
        if len(parts) == 2:
            if method == "POST":
                return "submit"
            return "status" if "id" in query else "list"
        if len(parts) == 3:
            return "status"
        return {"result": "result", "logs": "logs", "cancel": "cancel"}.get(parts[3], "other")
    if parts == ["v1", "watch"]:
        return "watch"
    if parts == ["v1", "health"]:
        return "health"
    return "other"


class FaultProxy:
    """``async with FaultProxy(upstream_url).running() as proxy``; ``proxy.url`` is what the client uses."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.scripts: dict[str, deque[Fault]] = {}
        self.windows: dict[str, tuple[float, Fault]] = {}  # route -> (until, fault), monotonic time
        self.requests: Counter[str] = Counter()  # per route, faulted or not
        self.faulted: Counter[str] = Counter()  # per route, answered with a fault
        self.status_requests: list[float] = []  # monotonic times of status requests
        self.url = ""

    @property
    def script(self) -> deque[Fault]:
        return self.scripts.setdefault("status", deque())

    def add(self, *faults: Fault, route: str = "status") -> None:
        """The next requests on ``route`` get these faults, one each, in order."""
        self.scripts.setdefault(route, deque()).extend(faults)

    def fail_for(self, seconds: float, fault: Fault, route: str = "status") -> None:
        """Every request on ``route`` gets ``fault`` for the next ``seconds``."""
        self.windows[route] = (time.monotonic() + seconds, fault)

    def _fault_for(self, route: str) -> Fault | None:
        script = self.scripts.get(route)
        if script:
            return script.popleft()
        window = self.windows.get(route)
        if window is not None and time.monotonic() < window[0]:
            return window[1]
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = route_of(request.method, request.path, request.query)
        self.requests[route] += 1
        if route == "status":
            self.status_requests.append(time.monotonic())
        fault = self._fault_for(route)
        if fault is not None:
            self.faulted[route] += 1
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

    @contextmanager
    def threaded(self) -> Iterator[FaultProxy]:
        """The proxy served from a thread with its own event loop (for sync callers)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        stop: asyncio.Event | None = None

        async def serve() -> None:
            nonlocal stop
            stop = asyncio.Event()
            async with self.running():
                ready.set()
                await stop.wait()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start within 10 s")
        try:
            yield self
        finally:
            assert stop is not None
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()

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
