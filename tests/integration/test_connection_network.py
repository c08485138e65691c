"""The connection's network settings against real servers on 127.0.0.1.

A forward proxy (absolute-URI requests and CONNECT tunnels), a TLS endpoint in front of the
real local job service with a throwaway CA and mutual TLS, ``https://`` pointed at a plain-http
port, and a redirect. No mocked client: every request goes through aiohttp's real stack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from tests.support.forward_proxy import ForwardProxy, TcpRelay
from tests.support.local_service import LocalService
from tests.support.tls_server import Pki, TlsTerminator, make_pki, server_context

from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import SubmitRequest
from jobservice_provider.core.errors import ConfigurationError, PermanentError, TransientError
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.wait import Outcome, WaitSpec, wait_for_job

pytestmark = pytest.mark.integration
PROXY_SECRET = "pr0xy-SECRET"
# A budget that would keep retrying for half a minute if a failure were taken for a transient one.
LONG_RETRY = RetryPolicy(budget=30, base=0.2, cap=1)


def config_for(host: str, token: str | None, **extra: Any) -> ServiceConfig:
    return ServiceConfig.from_connection_fields(conn_id="net", host=host, password=token, extra=extra)


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No proxy from the machine running the tests leaks into these tests."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    yield monkeypatch


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def health_and_a_job(config: ServiceConfig) -> str:
    """A health check, a submit and a status read: the calls a task makes."""
    async with JobServiceClient(config) as client:
        assert (await client.health())["service"]
        job = await client.submit(SubmitRequest("sleep", {"seconds": 0}))
        return (await client.get_job(job.id)).id


# -- (a) a forward proxy ---------------------------------------------------------------------------
async def test_the_proxy_extra_carries_every_request_through_the_proxy(local_service: LocalService, clean_proxy_env: Any) -> None:
    async with ForwardProxy().running() as proxy:
        await health_and_a_job(config_for(local_service.base_url, local_service.token, proxy=proxy.url))
    assert [r.method for r in proxy.requests] == ["GET", "POST", "GET"]
    assert all(r.target.startswith(local_service.base_url + "/v1/") for r in proxy.requests), proxy.requests


async def test_http_proxy_from_the_environment_is_used_and_no_proxy_bypasses_it(
    local_service: LocalService, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    config = config_for(local_service.base_url, local_service.token)
    async with ForwardProxy().running() as proxy:
        clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
        await health_and_a_job(config)
        assert len(proxy.requests) == 3
        clean_proxy_env.setenv("NO_PROXY", "localhost,127.0.0.1")
        await health_and_a_job(config)
        assert len(proxy.requests) == 3, "NO_PROXY lists the host: no request may go through the proxy"


async def test_the_proxy_extra_wins_over_the_environment(
    local_service: LocalService, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    async with ForwardProxy().running() as chosen, ForwardProxy().running() as environment:
        clean_proxy_env.setenv("HTTP_PROXY", environment.url)
        clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
        await health_and_a_job(config_for(local_service.base_url, local_service.token, proxy=chosen.url))
    assert len(chosen.requests) == 3 and environment.requests == []


async def test_proxy_credentials_reach_the_proxy_and_a_refusal_names_it_without_them(
    local_service: LocalService, clean_proxy_env: Any
) -> None:
    async with ForwardProxy(credentials=("squid", PROXY_SECRET)).running() as proxy:
        await health_and_a_job(
            config_for(local_service.base_url, local_service.token, proxy=proxy.url_with("squid", PROXY_SECRET))
        )
        assert len(proxy.requests) == 3 and all(r.proxy_authorization for r in proxy.requests)

        wrong = config_for(local_service.base_url, local_service.token, proxy=proxy.url_with("squid", "wrong-" + PROXY_SECRET))
        async with JobServiceClient(wrong) as client:
            with pytest.raises(ConfigurationError) as info:
                await client.health()
        missing = config_for(local_service.base_url, local_service.token, proxy=proxy.url)
        async with JobServiceClient(missing) as client:
            with pytest.raises(ConfigurationError) as missing_info:
                await client.health()
    message = str(info.value)
    assert "407" in message and f"proxy http://***@{proxy.url[len('http://') :]}" in message and "were refused" in message
    assert "Connection 'net'" in message and PROXY_SECRET not in message and "squid" not in message
    assert "are missing" in str(missing_info.value)
    assert len(proxy.requests) == 5  # each refusal is one request: a 407 is never retried


async def test_https_goes_through_a_connect_tunnel_and_proxy_credentials_never_enter_it(pki: Pki, clean_proxy_env: Any) -> None:
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"service": "recorder", "version": "1", "api": "v1"})

    async with tiny_server(record) as upstream, ForwardProxy(credentials=("squid", PROXY_SECRET)).running() as proxy:
        with TlsTerminator(upstream, server_context(pki)) as tls:
            config = config_for(tls.url, "svc-token", ca_bundle=str(pki.ca), proxy=proxy.url_with("squid", PROXY_SECRET))
            async with JobServiceClient(config) as client:
                assert (await client.health())["service"] == "recorder"
    (connect,) = proxy.requests
    assert connect.method == "CONNECT" and connect.target == tls.url.removeprefix("https://") and connect.proxy_authorization
    (inside,) = seen
    assert inside["Authorization"] == "Bearer svc-token"
    assert not any(name.lower().startswith("proxy-") for name in inside), inside


async def test_an_https_service_behind_https_proxy_from_the_environment(
    local_service: LocalService, pki: Pki, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    with TlsTerminator(local_service.base_url, server_context(pki)) as tls:
        async with ForwardProxy().running() as proxy:
            clean_proxy_env.setenv("https_proxy", proxy.url)
            await health_and_a_job(config_for(tls.url, local_service.token, ca_bundle=str(pki.ca)))
    assert [r.method for r in proxy.requests] == ["CONNECT"]  # one tunnel, kept alive for the three calls


async def test_an_unreachable_proxy_is_named_without_credentials_and_is_transient(
    local_service: LocalService, clean_proxy_env: Any
) -> None:
    async with ForwardProxy().running() as proxy:
        dead = proxy.url_with("squid", PROXY_SECRET)
    async with JobServiceClient(config_for(local_service.base_url, local_service.token, proxy=dead)) as client:
        with pytest.raises(TransientError) as info:
            await client.health()
    message = str(info.value)
    assert "cannot reach the proxy http://***@127.0.0.1:" in message and "the connection extra 'proxy'" in message
    assert PROXY_SECRET not in message and "squid" not in message


async def test_a_proxy_refusing_the_tunnel_is_a_permanent_error_naming_it(pki: Pki, clean_proxy_env: Any) -> None:
    async with ForwardProxy(connect_status=403).running() as proxy:
        config = config_for("https://127.0.0.1:9", "tok", ca_bundle=str(pki.ca), proxy=proxy.url_with("squid", PROXY_SECRET))
        async with JobServiceClient(config) as client:
            with pytest.raises(PermanentError) as info:
                await client.health()
    assert "HTTP 403" in str(info.value) and "proxy http://***@" in str(info.value) and PROXY_SECRET not in str(info.value)


# -- (b) TLS: a private CA and mutual TLS ----------------------------------------------------------
async def test_a_private_ca_fails_by_default_naming_ca_bundle_and_works_with_it(
    local_service: LocalService, pki: Pki, clean_proxy_env: Any
) -> None:
    with TlsTerminator(local_service.base_url, server_context(pki)) as tls:
        started = time.monotonic()
        result = await wait_once(config_for(tls.url, local_service.token))
        assert result.outcome is Outcome.ERROR and time.monotonic() - started < 2
        assert "certificate verification failed" in result.message and "'ca_bundle'" in result.message, result.message
        assert tls.connections == 1, "a TLS verification failure is never retried"

        with_other_ca = await wait_once(config_for(tls.url, local_service.token, ca_bundle=str(pki.other_ca)))
        assert with_other_ca.outcome is Outcome.ERROR and str(pki.other_ca) in with_other_ca.message

        await health_and_a_job(config_for(tls.url, local_service.token, ca_bundle=str(pki.ca)))
        assert tls.handshakes == 1


async def test_mutual_tls_fails_without_a_client_certificate_and_works_with_one(
    local_service: LocalService, pki: Pki, clean_proxy_env: Any
) -> None:
    with TlsTerminator(local_service.base_url, server_context(pki, require_client_cert=True)) as tls:
        started = time.monotonic()
        result = await wait_once(config_for(tls.url, local_service.token, ca_bundle=str(pki.ca)))
        assert result.outcome is Outcome.ERROR and time.monotonic() - started < 2
        assert "refused the TLS handshake" in result.message and "'client_cert'" in result.message, result.message
        # aiohttp itself sends an idempotent request once more after a connection error
        # (RFC 9112 9.3.1); the wait's transient-error loop never does.
        assert tls.connections <= 2, "a refused client certificate is never retried"

        separate = config_for(
            tls.url, local_service.token, ca_bundle=str(pki.ca), client_cert=str(pki.client_cert), client_key=str(pki.client_key)
        )
        await health_and_a_job(separate)
        await health_and_a_job(
            config_for(tls.url, local_service.token, ca_bundle=str(pki.ca), client_cert=str(pki.client_combined))
        )
        assert tls.handshakes == 2


# -- (c) https:// pointed at a plain-http port ------------------------------------------------------
async def test_https_to_a_plain_http_port_fails_at_once_saying_so(local_service: LocalService, clean_proxy_env: Any) -> None:
    async with TcpRelay(local_service.base_url).running() as relay:
        started = time.monotonic()
        result = await wait_once(config_for(f"https://127.0.0.1:{relay.port}", local_service.token))
        elapsed = time.monotonic() - started
    assert result.outcome is Outcome.ERROR, result
    assert "does not speak TLS on that port" in result.message and "use http://" in result.message, result.message
    assert "Connection 'net'" in result.message
    assert relay.connections == 1 and elapsed < 1.0, (relay.connections, elapsed)


# -- (d) redirects ---------------------------------------------------------------------------------
async def test_a_redirect_is_reported_with_its_location_and_the_token_never_follows_it(clean_proxy_env: Any) -> None:
    elsewhere: list[web.Request] = []
    redirected: list[web.Request] = []

    async def other_host(request: web.Request) -> web.Response:
        elsewhere.append(request)
        return web.json_response({"service": "elsewhere"})

    async with tiny_server(other_host) as target:

        async def moved(request: web.Request) -> web.Response:
            redirected.append(request)
            raise web.HTTPFound(f"{target}/v1/health?X-Signature=abc123")

        async with tiny_server(moved) as service:
            result = await wait_once(config_for(service, "never-leaves-home"))
            async with JobServiceClient(config_for(service, "never-leaves-home")) as client:
                with pytest.raises(PermanentError) as info:
                    await client.health()
    assert result.outcome is Outcome.ERROR and f"redirects to {target}/v1/health (query omitted)" in result.message
    message = str(info.value)
    assert "HTTP 302" in message and f"redirects to {target}/v1/health (query omitted)" in message and "abc123" not in message
    assert elsewhere == [], "the client followed a redirect"
    assert len(redirected) == 2  # one per call: a redirect is never retried


# -- helpers ---------------------------------------------------------------------------------------
async def wait_once(config: ServiceConfig) -> Any:
    """A wait on a made-up job with a long transient budget: only a permanent error ends it soon."""
    async with JobServiceClient(config) as client:
        spec = WaitSpec(job_id="j_1", poll=PollPolicy(interval=0.2), retry=LONG_RETRY)
        return await asyncio.wait_for(wait_for_job(client, spec, check_now=True), timeout=20)


@asynccontextmanager
async def tiny_server(handler: Any) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 answering every path with ``handler``; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
