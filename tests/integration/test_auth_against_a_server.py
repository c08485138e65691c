"""Each authentication scheme against a real HTTP server that checks it (127.0.0.1, both network modes).

The server is a stand-in for a service with another auth scheme: it checks the credentials
and answers the native health call; the local job service itself speaks bearer only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from tests.conftest import conn_json
from tests.support.shaping_proxy import ShapingProxy, network_is_shaped

from jobservice_provider.hooks.jobservice import JobServiceHook

pytestmark = pytest.mark.integration

SECRET = "correct-horse-battery"
SCHEMES: dict[str, tuple[str, str]] = {
    "bearer": ("Authorization", f"Bearer {SECRET}"),
    "basic": ("Authorization", "Basic " + base64.b64encode(f"airflow:{SECRET}".encode()).decode()),
    "header": ("X-API-Key", SECRET),
}


class AuthServer:
    """Answers GET /v1/health when the request carries exactly the expected credential header."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.expected: tuple[str, str] | None = None
        self.url = ""

    async def health(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        if self.expected is not None and request.headers.get(self.expected[0]) != self.expected[1]:
            return web.json_response(
                {"title": "Unauthorized", "status": 401}, status=401, content_type="application/problem+json"
            )
        return web.json_response({"service": "auth-check", "version": "1", "api": "v1"})

    def __enter__(self) -> AuthServer:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/v1/health", self.health)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(start()))
        assert ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[AuthServer, str]]:
    with AuthServer() as auth:
        if network_is_shaped():
            with ShapingProxy.in_front_of(auth.url) as shaper:
                yield auth, shaper.url
        else:
            yield auth, auth.url


def connect(monkeypatch: pytest.MonkeyPatch, url: str, scheme: str, password: str) -> JobServiceHook:
    extra: dict[str, Any] = {"auth_type": scheme}
    if scheme == "header":
        extra["auth_header"] = "X-API-Key"
    conn = json.loads(conn_json(url, password, **extra))
    if scheme == "basic":
        conn["login"] = "airflow"
    monkeypatch.setenv("AIRFLOW_CONN_AUTHED", json.dumps(conn))
    return JobServiceHook("authed")


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_each_scheme_authenticates_and_a_wrong_secret_names_the_scheme(
    server: tuple[AuthServer, str], monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    auth, url = server
    auth.expected = SCHEMES[scheme]
    ok, message = connect(monkeypatch, url, scheme, SECRET).test_connection()
    assert ok, message
    sent = auth.seen[-1]
    if scheme == "header":
        assert "Authorization" not in sent  # the key goes in its own header only
    ok, message = connect(monkeypatch, url, scheme, "wrong-secret-value").test_connection()
    assert not ok and "401" in message and f"auth_type '{scheme}'" in message and "authed" in message, message
    assert "wrong-secret-value" not in message and SECRET not in message


def test_none_sends_no_credentials(server: tuple[AuthServer, str], monkeypatch: pytest.MonkeyPatch) -> None:
    auth, url = server
    auth.expected = None
    monkeypatch.setenv("AIRFLOW_CONN_AUTHED", conn_json(url, None, auth_type="none"))
    ok, message = JobServiceHook("authed").test_connection()
    assert ok, message
    assert "Authorization" not in auth.seen[-1] and "X-API-Key" not in auth.seen[-1]
