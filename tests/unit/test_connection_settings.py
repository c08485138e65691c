"""Connection settings that behave: refused when wrong, secrets never shown, sessions kept apart.

The TLS files come from a real throwaway PKI (``tests.support.tls_server.make_pki``); network
behaviour is in ``tests/integration/test_connection_network.py``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.tls_server import Pki, make_pki

from jobservice_provider.core.config import ServiceConfig, redact_url
from jobservice_provider.core.dialects import get_dialect
from jobservice_provider.core.errors import ConfigurationError, PermanentError, TransientError
from jobservice_provider.core.http import HttpResponse
from jobservice_provider.core.policy import MIN_POLL_INTERVAL, PollPolicy
from jobservice_provider.core.sessions import proxy_route, shared_session, tls_context

SECRET = "hunter2-SECRET"


def config(host: str = "https://jobs.example.com", password: str | None = "tok", **extra: Any) -> ServiceConfig:
    return ServiceConfig.from_connection_fields(conn_id="svc", host=host, password=password, extra=extra)


def refused(host: str = "https://jobs.example.com", password: str | None = "tok", **extra: Any) -> str:
    """The message of the ConfigurationError these fields raise."""
    with pytest.raises(ConfigurationError) as info:
        config(host, password, **extra)
    assert "connection 'svc'" in info.value.message
    return info.value.message


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    yield monkeypatch


# -- the Base URL and the token ------------------------------------------------------------------
@pytest.mark.parametrize(
    "host", [f"http://admin:{SECRET}@jobs.example.com", f"admin:{SECRET}@jobs.example.com:8443", "https://admin@jobs.example.com"]
)
def test_user_info_in_the_host_is_refused_saying_where_credentials_go(host: str) -> None:
    message = refused(host)
    assert "user info" in message and "password field" in message and "'proxy' extra" in message
    assert SECRET not in message and "admin" not in message
    assert "***@jobs.example.com" in message


@pytest.mark.parametrize("token", [f"{SECRET}\n", f"{SECRET}\r\nX-Evil: 1", f"Bearer {SECRET}", f" {SECRET}", f"{SECRET}\x00"])
def test_a_token_with_line_breaks_spaces_or_control_characters_is_refused_unshown(token: str) -> None:
    message = refused(password=token)
    assert "API token (password field)" in message and "control character" in message
    assert SECRET not in message


def test_control_characters_in_the_host_are_refused() -> None:
    assert "control character" in refused("https://jobs.example.com\r\nX-Evil: 1")


# -- extra headers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [f"{SECRET}\r\nX-Evil: 1", f"{SECRET}\n", f"{SECRET}\r", f"a\x00{SECRET}", f"{SECRET}\x7f"])
def test_header_values_with_control_characters_are_refused_naming_the_header_not_the_value(value: str) -> None:
    message = refused(extra_headers={"X-Tenant": value})
    assert "'X-Tenant'" in message and "control character" in message and "not shown" in message
    assert SECRET not in message and "X-Evil" not in message


@pytest.mark.parametrize("name", ["X-Bad\r\nName", "X Tenant", "X-Tenant:", "", "X-Ténant"])
def test_header_names_that_are_not_http_tokens_are_refused(name: str) -> None:
    message = refused(extra_headers={name: "v"})
    assert "not a valid HTTP header name" in message and repr(name) in message


def test_ordinary_headers_and_tabs_in_values_are_kept() -> None:
    headers = {"X-Tenant": "analytics", "X-Trace": "a\tb", "X-Unicode": "café"}
    assert dict(config(extra_headers=headers).extra_headers) == headers


def test_proxy_authorization_in_extra_headers_is_refused_pointing_at_the_proxy_extra() -> None:
    message = refused(extra_headers={"proxy-authorization": f"Basic {SECRET}"})
    assert "'proxy' extra" in message and SECRET not in message


# -- the poll interval floor -----------------------------------------------------------------------
@pytest.mark.parametrize("interval", [1e-6, 0.0, 0.099, -1])
def test_a_poll_interval_below_the_floor_is_refused_in_the_connection(interval: float) -> None:
    message = refused(poll_interval=interval)
    assert "'poll_interval'" in message and "at least 0.1 seconds" in message


@pytest.mark.parametrize("interval", [1e-6, 0.05, float("nan")])
def test_a_poll_interval_below_the_floor_is_refused_in_a_policy(interval: float) -> None:
    with pytest.raises(ConfigurationError, match=r"at least 0\.1 seconds"):
        PollPolicy(interval=interval)
    with pytest.raises(ConfigurationError, match=r"at least 0\.1 seconds"):
        PollPolicy.from_dict({"interval": interval})  # a trigger's serialized policy


def test_the_floor_itself_is_accepted() -> None:
    assert MIN_POLL_INTERVAL == 0.1
    assert config(poll_interval=0.1).poll_interval == 0.1
    assert PollPolicy(interval=0.1).interval == 0.1


# -- the proxy extra -------------------------------------------------------------------------------
def test_proxy_credentials_are_kept_but_never_shown() -> None:
    cfg = config(proxy=f"http://squid:{SECRET}@proxy.example.com:3128/")
    assert cfg.proxy == f"http://squid:{SECRET}@proxy.example.com:3128"
    assert cfg.proxy_shown == "http://***@proxy.example.com:3128"
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)


@pytest.mark.parametrize(
    ("proxy", "problem"),
    [
        (f"socks5://u:{SECRET}@proxy:1080", "http:// or https:// URL"),
        ("proxy.example.com:3128", "http:// or https:// URL"),
        (f"http://u:{SECRET}@proxy:3128/some/path", "scheme://[user:password@]host[:port] only"),
        (f"http://u:{SECRET}@proxy:3128?x=1", "scheme://[user:password@]host[:port] only"),
        (f"http://u:{SECRET}@proxy:port", "not a valid URL"),
        (f"http://u:{SECRET}@proxy:3128\r\n", "control character"),
        ("http://", "http:// or https:// URL"),
    ],
)
def test_bad_proxies_are_refused_without_their_credentials(proxy: str, problem: str) -> None:
    message = refused(proxy=proxy)
    assert "'proxy'" in message and problem in message
    assert SECRET not in message


def test_redact_url_masks_user_info_only() -> None:
    assert redact_url(f"http://u:{SECRET}@h:1/p?q") == "http://***@h:1/p?q"
    assert redact_url(f"u:{SECRET}@h") == "***@h"
    assert redact_url("http://h/a@b") == "http://h/a@b"  # an @ in the path is not user info
    assert redact_url("http://h:3128") == "http://h:3128"


# -- TLS files -------------------------------------------------------------------------------------
def test_tls_files_are_accepted_when_sound(pki: Pki) -> None:
    cfg = config(ca_bundle=str(pki.ca), client_cert=str(pki.client_cert), client_key=str(pki.client_key))
    assert (cfg.ca_bundle, cfg.client_cert, cfg.client_key) == (str(pki.ca), str(pki.client_cert), str(pki.client_key))
    assert config(client_cert=str(pki.client_combined)).client_key is None  # the key may live in the cert file


def test_tls_files_with_a_proxy_spoken_to_over_tls_need_no_https_base_url(pki: Pki) -> None:
    assert config("http://jobs.internal", ca_bundle=str(pki.ca), proxy="https://proxy:3129").ca_bundle == str(pki.ca)


@pytest.mark.parametrize("field", ["ca_bundle", "client_cert", "client_key"])
def test_tls_paths_must_be_absolute_and_exist(field: str, pki: Pki, tmp_path: Path) -> None:
    others = {"client_cert": str(pki.client_cert)} if field == "client_key" else {}
    assert "must be an absolute path" in refused(**{field: "certs/ca.pem"}, **others)
    missing = str(tmp_path / "nowhere.pem")
    message = refused(**{field: missing}, **others)
    assert f"extra {field!r}" in message and missing in message and "does not exist" in message
    assert "is not a file" in refused(**{field: str(tmp_path)}, **others)


def test_an_unreadable_tls_file_is_refused_naming_the_user(pki: Pki, tmp_path: Path) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(pki.ca.read_bytes())
    locked.chmod(0)
    if os.geteuid() == 0:
        # Root reads any file whatever its mode; /proc/self/mem is a file no one can read from the start.
        if not Path("/proc/self/mem").is_file():
            pytest.skip("running as root without /proc: no file is unreadable")
        locked = Path("/proc/self/mem")
    message = refused(ca_bundle=str(locked))
    assert "'ca_bundle'" in message and "cannot read" in message and f"uid {os.getuid()}" in message


def test_tls_file_contents_are_checked(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    assert "'ca_bundle'" in (m := refused(ca_bundle=str(not_pem))) and "no PEM certificate" in m
    assert "'client_cert'" in (m := refused(client_cert=str(pki.client_key))) and "no PEM certificate" in m
    # A certificate alone, with no key anywhere.
    m = refused(client_cert=str(pki.client_cert))
    assert "no PEM private key" in m and "set 'client_key'" in m
    m = refused(client_cert=str(pki.client_cert), client_key=str(pki.server_key))
    assert "'client_cert' and 'client_key'" in m and "does not belong to the certificate" in m
    m = refused(client_cert=str(pki.client_cert), client_key=str(pki.client_key_encrypted))
    assert "encrypted with a passphrase" in m


def test_tls_settings_that_cannot_work_together_are_refused(pki: Pki) -> None:
    assert "without 'client_cert'" in refused(client_key=str(pki.client_key))
    assert "verify_tls is false" in refused(ca_bundle=str(pki.ca), verify_tls=False)
    m = refused("http://jobs.internal:8080", ca_bundle=str(pki.ca))
    assert "plain http" in m and "use https://" in m


def test_tls_context_trusts_the_ca_bundle_instead_of_the_system(pki: Pki) -> None:
    assert tls_context(config()) is True  # nothing special: aiohttp's shared default
    context = tls_context(config(ca_bundle=str(pki.ca), client_cert=str(pki.client_combined)))
    assert isinstance(context, ssl.SSLContext)
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == ["jobservice test CA"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    unverified = tls_context(config(verify_tls=False, client_cert=str(pki.client_combined)))
    assert isinstance(unverified, ssl.SSLContext) and unverified.verify_mode == ssl.CERT_NONE


# -- no secret in any message ----------------------------------------------------------------------
def test_no_configuration_message_shows_a_secret(pki: Pki) -> None:
    """Every refusal above, with secrets in every place one can hide: none is ever echoed."""
    cases: list[dict[str, Any]] = [
        {"host": f"https://u:{SECRET}@h"},
        {"password": f"{SECRET}\n"},
        {"extra": {"extra_headers": {"X-Key": f"{SECRET}\n"}}},
        {"extra": {"extra_headers": {"Proxy-Authorization": SECRET}}},
        {"extra": {"proxy": f"ftp://u:{SECRET}@p"}},
        {"extra": {"proxy": f"http://u:{SECRET}@p/x"}},
        {"extra": {"proxy": f"http://u:{SECRET}@p:x"}},
        {"extra": {"proxy": f"http://u:{SECRET}@p", "poll_interval": 0}},
        {"extra": {"proxy": f"http://u:{SECRET}@p", "ca_bundle": "relative.pem"}},
        {"extra": {"proxy": f"http://u:{SECRET}@p", "unknown": 1}},
    ]
    for case in cases:
        fields = {"conn_id": "svc", "host": "https://h", "password": SECRET, **case}
        with pytest.raises(ConfigurationError) as info:
            ServiceConfig.from_connection_fields(**fields)
        assert SECRET not in str(info.value) and SECRET not in repr(info.value), case


# -- sessions are shared only by identical transport settings -------------------------------------
def test_configs_with_different_tls_or_proxy_settings_have_different_keys(pki: Pki) -> None:
    base = config()
    variants = [
        config(verify_tls=False),
        config(ca_bundle=str(pki.ca)),
        config(client_cert=str(pki.client_combined)),
        config(client_cert=str(pki.client_cert), client_key=str(pki.client_key)),
        config(proxy="http://proxy:3128"),
        config(proxy="http://other:3128"),
        config(proxy=f"http://u:{SECRET}@proxy:3128"),
        config("https://jobs.example.com:8443"),
    ]
    keys = [c.transport_key for c in (base, *variants)]
    assert len(set(keys)) == len(keys)
    assert len({c.service_key for c in (base, *variants)}) == len(keys)
    assert len({hash(c) for c in (base, *variants)}) == len(keys)
    # A rotated token is the same route: the session (and the watcher, which adopts it) is kept.
    assert config(password="rotated").transport_key == base.transport_key
    assert config(password="rotated").service_key == base.service_key


async def test_shared_sessions_are_never_shared_across_transport_settings(pki: Pki) -> None:
    plain, custom_ca, proxied = config(), config(ca_bundle=str(pki.ca)), config(proxy="http://proxy:3128")
    async with (
        shared_session(plain) as a,
        shared_session(config(password="other-token")) as a_again,
        shared_session(custom_ca) as b,
        shared_session(proxied) as c,
    ):
        assert a is a_again
        assert len({id(a), id(b), id(c)}) == 3


# -- which proxy a request takes -------------------------------------------------------------------
def test_the_environment_proxy_is_used_per_scheme_unless_no_proxy_lists_the_host(no_proxy_env: pytest.MonkeyPatch) -> None:
    env = no_proxy_env
    assert proxy_route(config()) is None
    env.setenv("HTTPS_PROXY", f"http://u:{SECRET}@corp-proxy:3128")
    env.setenv("HTTP_PROXY", "http://plain-proxy:3128")
    route = proxy_route(config())
    assert route is not None and route.url == "http://corp-proxy:3128" and route.authorization is not None
    assert route.shown == "proxy http://***@corp-proxy:3128 (HTTPS_PROXY)" and SECRET not in repr(route)
    http_route = proxy_route(config("http://jobs.internal:8080"))
    assert http_route is not None and http_route.url == "http://plain-proxy:3128"
    env.setenv("NO_PROXY", "localhost,.example.com")
    assert proxy_route(config()) is None
    assert proxy_route(config("https://jobs.elsewhere.org")) is not None


def test_the_proxy_extra_wins_over_the_environment(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", "http://corp-proxy:3128")
    no_proxy_env.setenv("NO_PROXY", "*")
    route = proxy_route(config(proxy="http://team-proxy:8080"))
    assert route is not None and route.url == "http://team-proxy:8080" and "the connection extra 'proxy'" in route.shown


def test_proxy_credentials_ride_on_the_connect_for_https_and_on_the_request_for_http() -> None:
    route = proxy_route(config(proxy=f"http://squid:{SECRET}@proxy:3128"))
    assert route is not None
    tunnelled = route.request_kwargs("https://jobs.example.com/v1/health", {"X-Tenant": "a"})
    assert tunnelled["proxy"] == "http://proxy:3128" and tunnelled["headers"] == {"X-Tenant": "a"}
    assert tunnelled["proxy_headers"]["Proxy-Authorization"].startswith("Basic ")
    forwarded = route.request_kwargs("http://jobs.internal/v1/health", {"X-Tenant": "a"})
    assert "proxy_headers" not in forwarded and forwarded["headers"]["Proxy-Authorization"].startswith("Basic ")


# -- redirects -------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_permanent_error_naming_its_location(status: int) -> None:
    response = HttpResponse(
        status=status,
        headers={"location": f"https://u:{SECRET}@elsewhere.example/v1/health?X-Amz-Signature={SECRET}"},
        body=b"<html>moved</html>",
        url="GET https://jobs.example.com/v1/health",
    )
    error = get_dialect("native", "").error_for(response)
    assert isinstance(error, PermanentError) and not isinstance(error, TransientError) and error.status == status
    assert f"HTTP {status}" in error.message and "redirects to https://elsewhere.example/v1/health" in error.message
    assert "not followed" in error.message and "Base URL" in error.message
    assert SECRET not in error.message


def test_a_redirect_without_location_says_so() -> None:
    response = HttpResponse(status=302, headers={}, body=b"", url="GET https://jobs.example.com/v1/health")
    error = get_dialect("native", "").error_for(response)
    assert isinstance(error, PermanentError) and "without a Location header" in error.message
