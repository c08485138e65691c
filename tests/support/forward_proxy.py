"""An HTTP forward proxy for tests, as a company's proxy behaves, and a counting TCP relay.

``ForwardProxy`` takes absolute-URI requests (``GET http://host:port/path``) for http targets
and ``CONNECT host:port`` tunnels for https ones, counts them, and can require
``Proxy-Authorization`` (answering 407 otherwise). It forwards one request per client
connection (``Connection: close`` both ways), which keeps it small and is allowed by HTTP/1.1.
It strips the ``Proxy-*`` headers it consumed before forwarding, as real proxies do.

``TcpRelay`` pipes raw TCP to an upstream and counts connections (to count attempts that never
become an HTTP request, such as a TLS handshake against a plain-http port).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer", "upgrade"}


@dataclasses.dataclass(frozen=True)
class ProxiedRequest:
    """One request the proxy received: ``CONNECT host:port`` or ``GET http://…``."""

    method: str
    target: str
    proxy_authorization: str | None


class ForwardProxy:
    """``async with ForwardProxy().running() as proxy``; ``proxy.url`` is ``http://127.0.0.1:<port>``.

    :param credentials: ``(user, password)`` the proxy requires, or None for an open proxy.
    :param connect_status: answer every CONNECT with this status instead of tunnelling (e.g. 403).
    """

    def __init__(self, credentials: tuple[str, str] | None = None, connect_status: int | None = None) -> None:
        self.credentials = credentials
        self.connect_status = connect_status
        self.requests: list[ProxiedRequest] = []
        self.url = ""
        self._tasks: set[asyncio.Task[None]] = set()

    def url_with(self, user: str, password: str) -> str:
        """The proxy's URL carrying credentials, as a user writes it in the ``proxy`` extra."""
        return self.url.replace("http://", f"http://{user}:{password}@")

    def _authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        return header == expected

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines if ":" in line]
            lookup = {name.lower(): value for name, value in headers}
            self.requests.append(ProxiedRequest(method, target, lookup.get("proxy-authorization")))
            if not self._authorized(lookup.get("proxy-authorization")):
                writer.write(
                    b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                await writer.drain()
                return
            if method == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                body = await reader.readexactly(int(lookup.get("content-length", "0")))
                await self._forward(method, target, headers, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connect_status is not None:
            writer.write(f"HTTP/1.1 {self.connect_status} Refused By Test Proxy\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            return
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _forward(
        self, method: str, target: str, headers: list[tuple[str, ...]], body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "") or "/"
            kept = [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP]
            lines = [f"{method} {path} HTTP/1.1", *(f"{name}: {value}" for name, value in kept), "Connection: close"]
            up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await up_writer.drain()
            response_head = await up_reader.readuntil(b"\r\n\r\n")
            status_line, *response_lines = response_head.decode("latin-1").split("\r\n")
            response_kept = [line for line in response_lines if line and line.split(":", 1)[0].strip().lower() != "connection"]
            writer.write(("\r\n".join([status_line, *response_kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1"))
            await _pipe(up_reader, writer)
        finally:
            up_writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ForwardProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()


class TcpRelay:
    """``async with TcpRelay(upstream_url).running() as relay``: ``relay.port`` forwards raw TCP;
    ``relay.connections`` counts the connections accepted."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port, upstream
        self.upstream = (parts.hostname, parts.port)
        self.connections = 0
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except OSError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TcpRelay]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
