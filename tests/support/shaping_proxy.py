"""A TCP proxy that makes loopback behave like a real network, for the ``shaped`` test network mode.

On 127.0.0.1 a response usually reaches the client in one piece, so code that trusts a single
``read(n)`` passes every test and fails on the first real network. This proxy sits in front of an
upstream ``host:port`` and passes any bytes through unchanged (it knows nothing of HTTP, so
keep-alive, chunked encoding and long polls work as they do without it), but:

- everything going server → client leaves in segments of ``Shape.segment_bytes`` (1,400, about one
  Ethernet MSS), each written and drained on its own with ``TCP_NODELAY`` and spaced
  ``Shape.segment_gap`` apart, so the client's reads see the body arrive piece by piece;
- everything going client → server is held ``Shape.latency`` before it is forwarded (a delay line:
  every burst arrives late, but a big upload is not slowed down per chunk).

It runs its own event loop in a background thread, so sync tests and async tests (each with their
own, short-lived loop) can share one proxy. Each client connection gets its own upstream
connection; while the upstream is down a client connection is accepted and closed at once, and
the next one reaches the upstream again once it is back.

``JOBSERVICE_TEST_NETWORK=shaped`` routes the integration tier through these proxies
(see :func:`network_mode` and ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit

NETWORK_ENV = "JOBSERVICE_TEST_NETWORK"
NETWORK_MODES = ("direct", "shaped")
START_TIMEOUT = 10.0
READ_SIZE = 64 * 1024
# Chunks waiting in the client → server delay line before the proxy stops reading the client
# (back-pressure, so a fast uploader cannot make the proxy buffer without bound).
DELAY_LINE_CHUNKS = 64
# How long a client whose upstream is down may take to hang up before the proxy closes anyway.
UNREACHABLE_LINGER = 5.0


def network_mode() -> str:
    """The test network mode from ``JOBSERVICE_TEST_NETWORK``: ``direct`` (default) or ``shaped``."""
    mode = os.environ.get(NETWORK_ENV, "").strip().lower() or "direct"
    if mode not in NETWORK_MODES:
        # A typo must not silently run the direct mode while the log says "shaped".
        raise ValueError(f"{NETWORK_ENV}={mode!r}: expected one of {', '.join(NETWORK_MODES)}")
    return mode


def network_is_shaped() -> bool:
    return network_mode() == "shaped"


@dataclasses.dataclass(frozen=True)
class Shape:
    """How the proxy distorts traffic.

    :param segment_bytes: largest piece written to the client at once.
    :param segment_gap: seconds between two pieces written to the client.
    :param latency: seconds every byte from the client is held before it is forwarded.
    """

    segment_bytes: int = 1400
    segment_gap: float = 0.001
    latency: float = 0.020

    def __post_init__(self) -> None:
        if self.segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {self.segment_bytes}")
        if self.segment_gap < 0 or self.latency < 0:
            raise ValueError(f"segment_gap and latency must be >= 0, got {self.segment_gap}, {self.latency}")


@dataclasses.dataclass(frozen=True)
class Counters:
    """What went through the proxy so far (a snapshot; counted before the bytes are written, so a
    client that has seen the bytes always sees them counted)."""

    connections: int = 0  # client connections accepted
    upstream_unreachable: int = 0  # of those, closed at once because the upstream refused
    bytes_to_server: int = 0
    chunks_to_server: int = 0
    bytes_to_client: int = 0
    segments_to_client: int = 0


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ShapingProxy:
    """``with ShapingProxy("127.0.0.1", port) as proxy:`` → clients use ``proxy.url``.

    :param upstream_host: where the real server listens.
    :param upstream_port: its port; :meth:`retarget` changes it for later connections.
    :param shape: segment size, gap and latency.
    :param port: the port to listen on (0: a free one, kept across :meth:`stop`/:meth:`start`).
    """

    def __init__(self, upstream_host: str, upstream_port: int, shape: Shape = Shape(), *, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.shape = shape
        self.port = port
        self._counters = Counters()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @classmethod
    def in_front_of(cls, url: str, shape: Shape = Shape()) -> ShapingProxy:
        """A (not yet started) proxy for the server of ``url`` (``http://host:port``)."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r}: need an explicit host and port")
        return cls(parts.hostname, parts.port, shape)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the proxy (valid once started; stable across restarts)."""
        if not self.port:
            raise RuntimeError("the shaping proxy has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def retarget(self, upstream_host: str, upstream_port: int) -> None:
        """Send connections made from now on to another upstream (open ones stay where they are)."""
        self.upstream = (upstream_host, upstream_port)

    def counters(self) -> Counters:
        with self._lock:
            return self._counters

    def _count(self, **increments: int) -> None:
        with self._lock:
            current = self._counters
            self._counters = dataclasses.replace(current, **{name: getattr(current, name) + n for name, n in increments.items()})

    # -- lifecycle (called from the test's thread) ------------------------------------------
    def start(self) -> ShapingProxy:
        """Listen (on the same port as before after a :meth:`stop`) and return once accepting."""
        if self._thread is not None:
            raise RuntimeError("the shaping proxy is already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"shaping-proxy->{self.upstream[1]}", daemon=True)
        thread.start()
        try:
            server = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(START_TIMEOUT)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self._loop, self._thread, self._server = loop, thread, server
        self.port = server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listener and every open connection; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(START_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = self._thread = self._server = None

    def __enter__(self) -> ShapingProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- inside the proxy's loop ------------------------------------------------------------
    async def _listen(self) -> asyncio.Server:
        # reuse_address (asyncio's default on POSIX) lets a restart bind the port its last run held.
        return await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._count(connections=1)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            _no_delay(client_writer)
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                # The upstream is down: the client sees its connection closed before any answer, and
                # its next connection tries the upstream again.
                self._count(upstream_unreachable=1)
                await self._close_cleanly(client_reader, client_writer)
                return
            _no_delay(upstream_writer)
            up = asyncio.create_task(self._client_to_server(client_reader, upstream_writer))
            down = asyncio.create_task(self._server_to_client(upstream_reader, client_writer))
            try:
                done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
                if any(t.exception() is not None for t in done):
                    # A reset on one side is passed on as a reset, not as a polite end of stream.
                    client_writer.transport.abort()
                    upstream_writer.transport.abort()
            finally:
                for pump in (up, down):
                    pump.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the proxy is stopping
        finally:
            self._connections.discard(task)
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()

    @staticmethod
    async def _close_cleanly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """End of stream to the client, then wait for it to hang up: closing a socket with its
        request still unread would send a reset instead, and the client would see either one
        depending on timing."""
        writer.write_eof()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(UNREACHABLE_LINGER):
                while await reader.read(READ_SIZE):
                    pass

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(DELAY_LINE_CHUNKS)

        async def forward() -> None:
            while True:
                arrived, data = await line.get()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                await asyncio.sleep(max(0.0, arrived + self.shape.latency - time.monotonic()))
                self._count(bytes_to_server=len(data), chunks_to_server=1)
                writer.write(data)
                await writer.drain()

        forwarder = asyncio.create_task(forward())
        try:
            while True:
                data = await reader.read(READ_SIZE)
                await line.put((time.monotonic(), data))
                if not data:
                    break
            await forwarder
        finally:
            forwarder.cancel()

    async def _server_to_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size, gap = self.shape.segment_bytes, self.shape.segment_gap
        last_sent = float("-inf")
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            for start in range(0, len(data), size):
                wait = last_sent + gap - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                segment = data[start : start + size]
                self._count(bytes_to_client=len(segment), segments_to_client=1)
                writer.write(segment)
                await writer.drain()
                last_sent = time.monotonic()
