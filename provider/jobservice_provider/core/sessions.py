"""One aiohttp session per service per event loop, shared by every wait in the process.

A triggerer runs hundreds of waits in one event loop; each opening its own session
(as HttpSensorTrigger does per poll) costs a TCP and TLS handshake per request.
Sessions are reference-counted and closed when the last user leaves.

This module is also the one place that knows how a connection reaches its service: the TLS
context (``verify_tls``, ``ca_bundle``, ``client_cert``/``client_key``), the proxy (the
``proxy`` extra, else ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``), and how their failures read.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import os
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp

from jobservice_provider import __version__
from jobservice_provider.core.config import ServiceConfig, load_tls_files, redact_url
from jobservice_provider.core.errors import ConfigurationError, JobServiceError, PermanentError, TransientError

USER_AGENT = f"airflow-provider-jobservice/{__version__}"
DEFAULT_CONNECTION_LIMIT = 32

# OpenSSL's reasons when the bytes that came back are not TLS at all: a plain-http server
# answering our ClientHello with "HTTP/1.1 400 ...".
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}
)
# Alerts a server sends when it refuses our client certificate, or wanted one we did not send.
_CLIENT_CERT_REFUSED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
    }
)


def tls_context(config: ServiceConfig) -> ssl.SSLContext | bool:
    """The TLS settings of ``config`` as aiohttp's ``ssl=``: the one place they are built.

    ``True`` (aiohttp's shared default context) when nothing differs from the defaults, so
    ordinary connections do not each load the system's CA store again.
    """
    if config.verify_tls and not (config.ca_bundle or config.client_cert):
        return True
    where = f"connection {config.conn_id!r}" if config.conn_id else "connection"
    try:
        # ca_bundle replaces the system's CAs (as curl --cacert and requests' verify= do): a
        # private service is trusted for its own CA only. None loads the system's.
        context = ssl.create_default_context(cafile=config.ca_bundle)
    except (ssl.SSLError, OSError) as exc:
        # Checked when the connection was read; the file may have changed since.
        raise ConfigurationError(f"{where}: extra 'ca_bundle' {config.ca_bundle!r} cannot be loaded ({exc})") from None
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    load_tls_files(context, None, config.client_cert, config.client_key, where)
    return context


@dataclasses.dataclass(frozen=True)
class ProxyRoute:
    """How requests of one connection go through a proxy.

    :param url: the proxy, without credentials (aiohttp never holds them in a URL, so none of
        its messages or reprs can show them).
    :param authorization: the ``Proxy-Authorization`` value, if the proxy URL had credentials.
    :param shown: the proxy as messages name it (credentials masked) and where it came from.
    :param from_extra: whether it is the connection's ``proxy`` extra (else the environment's).
    """

    url: str
    authorization: str | None = dataclasses.field(default=None, repr=False)
    shown: str = ""
    from_extra: bool = False

    def request_kwargs(self, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """``proxy=``, its credentials and the ``headers`` for one aiohttp request to ``url``.

        Through a CONNECT tunnel (https targets) the credentials go on the CONNECT only, never
        into the tunnel to the service; an http target's request itself goes to the proxy, so
        they ride on it (and the proxy strips them).
        """
        kwargs: dict[str, Any] = {"proxy": self.url, "headers": headers}
        if self.authorization:
            if url.startswith("https:"):
                kwargs["proxy_headers"] = {"Proxy-Authorization": self.authorization}
            else:
                kwargs["headers"] = {**headers, "Proxy-Authorization": self.authorization}
        return kwargs


# The variables that decide the environment's proxy; REQUEST_METHOD because urllib (and so
# requests) ignores upper-case HTTP_PROXY under CGI, where a client's "Proxy:" header sets it.
_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "REQUEST_METHOD")


def proxy_route(config: ServiceConfig) -> ProxyRoute | None:
    """The proxy ``config``'s requests take: its ``proxy`` extra, else the environment's.

    The environment is read as curl and requests read it: ``HTTPS_PROXY`` for https Base URLs,
    ``HTTP_PROXY`` for http ones (lower case first), unless ``NO_PROXY`` lists the host. aiohttp's
    own ``trust_env`` is not used: it would also send ~/.netrc passwords to the service and fail
    every request whose host has an entry there (its Basic auth clashes with the bearer token).
    """
    if config.proxy:
        return _route(config.proxy, "the connection extra 'proxy'", from_extra=True)
    # Looked up per request (seven dictionary lookups; the rest is cached), so a changed
    # environment applies at once.
    return _environment_route(config.base_url, tuple(os.environ.get(name) for name in _PROXY_VARIABLES))


@functools.lru_cache(maxsize=256)
def _environment_route(base_url: str, variables: tuple[str | None, ...]) -> ProxyRoute | None:
    found = dict(zip(_PROXY_VARIABLES, variables, strict=True))
    cgi = bool(found["REQUEST_METHOD"])
    parts = urlsplit(base_url)
    name = f"{parts.scheme}_proxy"
    url = found[name] or (None if cgi and name == "http_proxy" else found[name.upper()])
    if not url or not parts.hostname:
        return None
    no_proxy = found["no_proxy"] or found["NO_PROXY"]
    # urllib's NO_PROXY matching (requests uses it too); missing from typeshed, hence getattr.
    bypass: Callable[[str, Mapping[str, str]], bool] = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009
    if no_proxy and bypass(parts.netloc, {"no": no_proxy}):
        return None
    return _route(url if "://" in url else f"http://{url}", name.upper())


@functools.lru_cache(maxsize=256)
def _route(url: str, source: str, *, from_extra: bool = False) -> ProxyRoute:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    authorization = None
    if parts.username is not None or parts.password is not None:
        # Encoded here: aiohttp's BasicAuth is deprecated and its replacement only exists since 3.14.
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    return ProxyRoute(
        url=f"{parts.scheme}://{host}",
        authorization=authorization,
        shown=f"proxy {redact_url(url)} ({source})",
        from_extra=from_extra,
    )


def transport_error(config: ServiceConfig, described: str, exc: BaseException) -> JobServiceError:
    """What a failure below HTTP means, with what to fix; the transient ones may be retried.

    Classified by exception type and the TLS library's reason code, never by message text.
    """
    route = proxy_route(config)
    via = f" via {route.shown}" if route else ""
    reason = _ssl_reason(exc)
    https = config.base_url.startswith("https:")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        hint = (
            f"the certificate is not signed by the CAs of extra 'ca_bundle' ({config.ca_bundle})"
            if config.ca_bundle
            else "if the service uses a private CA, set the connection extra 'ca_bundle' to a PEM file of that CA"
        )
        return ConfigurationError(
            f"{described}: TLS certificate verification failed{via} ({getattr(cause, 'verify_message', None) or cause}); "
            f"{hint} (or set verify_tls=false for a trusted test service only)"
        )
    if reason in _NOT_TLS and https:
        return ConfigurationError(
            f"{described}: the server does not speak TLS on that port (its answer is not TLS: {reason}); "
            "if it serves plain HTTP, use http:// in the Base URL"
        )
    if reason in _CLIENT_CERT_REFUSED and https:
        if config.client_cert:
            hint = f"it did not accept the client certificate of extra 'client_cert' ({config.client_cert})"
        else:
            hint = "it may require a client certificate (mutual TLS): set the connection extras 'client_cert' (and 'client_key')"
        return ConfigurationError(f"{described}: the server refused the TLS handshake ({reason}){via}; {hint}")
    if isinstance(exc, aiohttp.ClientHttpProxyError) and route:
        return _proxy_status_error(described, exc.status, exc.message, route)
    if isinstance(exc, aiohttp.ClientProxyConnectionError) and route:
        return TransientError(f"{described}: cannot reach the {route.shown}: {exc.os_error.strerror or exc.os_error}")
    text = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
    return TransientError(f"{described}: {text}{via}")


def proxy_refusal(config: ServiceConfig, described: str, reason: str) -> ConfigurationError:
    """The error for a 407 a proxy sent in answer to a plain-http request."""
    route = proxy_route(config)
    if route is None:
        return ConfigurationError(
            f"{described}: HTTP 407 {reason}: a proxy between here and the service wants credentials; "
            "set the connection extra 'proxy' to http://user:password@host:port"
        )
    return _proxy_auth_error(f"{described}: the {route.shown} answered HTTP 407 {reason}", route)


def _proxy_auth_error(message: str, route: ProxyRoute) -> ConfigurationError:
    where = "in the connection extra 'proxy'" if route.from_extra else "in the proxy URL of the environment"
    state = "were refused" if route.authorization else "are missing"
    return ConfigurationError(f"{message}; its credentials {state}: give them as http://user:password@host:port {where}")


def _proxy_status_error(described: str, status: int, reason: str, route: ProxyRoute) -> JobServiceError:
    """A CONNECT the proxy answered with something else than 200."""
    message = f"{described}: the {route.shown} answered HTTP {status} {reason}"
    if status == 407:
        return _proxy_auth_error(message, route)
    if status in (502, 503, 504):
        return TransientError(message, status=status)
    return PermanentError(f"{message}; the proxy does not let this connection through", status=status)


def _ssl_reason(exc: BaseException) -> str | None:
    """The TLS library's reason code behind ``exc``, wherever aiohttp keeps the ssl error."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        # aiohttp's own SSL errors subclass ssl.SSLError without a reason; the library's error
        # is in their os_error or their cause.
        for candidate in (current, getattr(current, "os_error", None)):
            reason = getattr(candidate, "reason", None) if isinstance(candidate, ssl.SSLError) else None
            if isinstance(reason, str):
                return reason
        current = current.__cause__ or current.__context__
    return None


def new_session(config: ServiceConfig, connection_limit: int = DEFAULT_CONNECTION_LIMIT) -> aiohttp.ClientSession:
    """A session with a bounded connection pool and the connection's TLS settings.

    The proxy is passed per request (``ProxyRoute.request_kwargs``): aiohttp takes a session-wide
    proxy URL but its credentials only through a deprecated argument.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connection_limit, ssl=tls_context(config)),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )


@dataclasses.dataclass
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


_sessions: dict[tuple[int, Hashable], _Shared] = {}


@asynccontextmanager
async def shared_session(config: ServiceConfig) -> AsyncIterator[aiohttp.ClientSession]:
    """The session of ``config``'s service in the running loop; closed after its last user."""
    key = (id(asyncio.get_running_loop()), config.transport_key)
    shared = _sessions.get(key)
    if shared is None or shared.session.closed:
        shared = _sessions[key] = _Shared(new_session(config))
    shared.users += 1
    try:
        yield shared.session
    finally:
        shared.users -= 1
        if shared.users == 0:
            del _sessions[key]
            await shared.session.close()
