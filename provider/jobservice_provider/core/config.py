"""Service configuration, parsed once from a connection's fields into a frozen object.

Extras are allow-listed: an unknown key is an error naming it, never silently
turned into a header. Precedence: operator argument > connection extra > default.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import ssl
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any
from urllib.parse import SplitResult, urlsplit

from jobservice_provider.core.errors import ConfigurationError
from jobservice_provider.core.policy import MIN_POLL_INTERVAL

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_TRANSIENT_ERROR_BUDGET = 600.0
# Large enough for any result the operator's max_result_bytes lets through by default (1 MiB)
# many times over; a bigger answer is more likely a mistake than data.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# The built-in dialects; packages add theirs under this entry point group (see core/dialects).
DIALECTS = ("native", "ray", "declarative")
DIALECT_ENTRY_POINT_GROUP = "jobservice_provider.dialects"
# How the connection's secret reaches the service; see ServiceConfig.auth_headers.
AUTH_TYPES = ("bearer", "basic", "header", "none")

# extra key -> (python type(s) accepted, description); the single list of allowed extras.
KNOWN_EXTRAS: dict[str, tuple[tuple[type, ...], str]] = {
    "dialect": (
        (str,),
        "how to speak to the service: " + ", ".join(DIALECTS) + f" or a dialect installed under the entry point group "
        f"{DIALECT_ENTRY_POINT_GROUP}",
    ),
    "dialect_options": ((dict, str), "the dialect's configuration object (the declarative dialect's spec); see docs/dialects.md"),
    "auth_type": (
        (str,),
        "how the password is sent: bearer (Authorization: Bearer), basic (login and password), "
        "header (in the header auth_header names), none",
    ),
    "auth_header": ((str,), "with auth_type header: the header that carries the password, e.g. X-API-Key"),
    "verify_tls": ((bool,), "verify the server's TLS certificate"),
    "request_timeout": ((int, float), "seconds before one HTTP request is abandoned"),
    "poll_interval": ((int, float), "default seconds between status checks"),
    "transient_error_budget": ((int, float), "seconds of continuous transient failure tolerated"),
    "extra_headers": ((dict,), "additional HTTP headers sent with every request"),
    "max_response_bytes": ((int,), "largest response body read from the service, in bytes"),
    "proxy": ((str,), "URL of an http(s) proxy, e.g. http://user:password@proxy:3128; wins over HTTPS_PROXY/HTTP_PROXY"),
    "ca_bundle": ((str,), "absolute path of a PEM file of the CA certificates to trust instead of the system's"),
    "client_cert": ((str,), "absolute path of a PEM client certificate for mutual TLS (may hold its key too)"),
    "client_key": ((str,), "absolute path of the PEM private key of client_cert, if not in that file"),
}
# Airflow's connection form may store fields as extra__<conn_type>__<name>.
_FORM_PREFIX = "extra__jobservice__"

# Control characters let a value end an HTTP header line early (CR/LF) or are rejected deep
# inside aiohttp mid-request; refusing them when the connection is read says which field is wrong.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_TAB = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a header value may hold a tab
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
_PEM_CERT = "-----BEGIN CERTIFICATE-----"
_PEM_KEY = re.compile(r"-----BEGIN (?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----")
_PEM_ENCRYPTED = re.compile(r"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Everything the core client needs to reach one service."""

    base_url: str
    token: str | None = dataclasses.field(default=None, repr=False)
    auth_type: str = "bearer"
    login: str | None = None
    auth_header: str | None = None
    dialect: str = "native"
    # Canonical JSON text (sorted keys), so the config stays frozen and hashable.
    dialect_options: str = ""
    verify_tls: bool = True
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    transient_error_budget: float = DEFAULT_TRANSIENT_ERROR_BUDGET
    extra_headers: tuple[tuple[str, str], ...] = ()
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    conn_id: str | None = None
    # May carry the proxy's credentials: never in repr; messages show ``proxy_shown``.
    proxy: str | None = dataclasses.field(default=None, repr=False)
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @property
    def transport_key(self) -> tuple[str | bool | None, ...]:
        """What a connection pool depends on: configs that differ here never share a session
        (a pooled connection keeps the TLS identity and the route it was opened with)."""
        return (self.base_url, self.verify_tls, self.ca_bundle, self.client_cert, self.client_key, self.proxy)

    @property
    def service_key(self) -> tuple[str | bool | None, ...]:
        """Identifies one service for sharing a watcher (and its session) between waits."""
        return (self.conn_id, self.dialect, *self.transport_key)

    def auth_headers(self) -> tuple[tuple[str, str], ...]:
        """The header that carries the credentials, as ``auth_type`` says (none without a secret)."""
        if self.auth_type == "basic" and self.login is not None and self.token:
            credentials = base64.b64encode(f"{self.login}:{self.token}".encode()).decode("ascii")
            return (("Authorization", f"Basic {credentials}"),)
        if self.auth_type == "header" and self.auth_header and self.token:
            return ((self.auth_header, self.token),)
        if self.auth_type == "bearer" and self.token:
            return (("Authorization", f"Bearer {self.token}"),)
        return ()

    @property
    def proxy_shown(self) -> str | None:
        """The ``proxy`` extra as messages may show it: credentials replaced by ``***``."""
        return redact_url(self.proxy) if self.proxy else None

    @classmethod
    def from_connection_fields(
        cls,
        *,
        conn_id: str | None,
        host: str | None,
        schema: str | None = None,
        port: int | None = None,
        password: str | None = None,
        extra: Mapping[str, Any] | str | None = None,
        login: str | None = None,
    ) -> ServiceConfig:
        """Build a config from a connection's fields, naming the connection in every error."""
        where = f"connection {conn_id!r}" if conn_id else "connection"
        extras = _parse_extra(extra, where)
        base_url = _base_url(host, schema, port, where)
        if password and (_CONTROL.search(password) or password != password.strip() or " " in password):
            # Never echo the token, not even in part.
            raise ConfigurationError(
                f"{where}: the API token (password field) contains a line break, space or other control character "
                "(often a newline copied with it); paste the token alone"
            )
        kwargs: dict[str, Any] = {}
        for key, value in extras.items():
            types, _ = KNOWN_EXTRAS[key]
            if isinstance(value, bool) and bool not in types:
                raise ConfigurationError(f"{where}: extra {key!r} must be a number, got {value!r}")
            if not isinstance(value, types):
                wanted = " or ".join(t.__name__ for t in types)
                raise ConfigurationError(f"{where}: extra {key!r} must be {wanted}, got {type(value).__name__} {value!r}")
            kwargs[key] = value
        if "request_timeout" in kwargs and not kwargs["request_timeout"] > 0:
            raise ConfigurationError(f"{where}: extra 'request_timeout' must be > 0, got {kwargs['request_timeout']!r}")
        if "poll_interval" in kwargs and not kwargs["poll_interval"] >= MIN_POLL_INTERVAL:
            raise ConfigurationError(
                f"{where}: extra 'poll_interval' must be at least {MIN_POLL_INTERVAL:g} seconds "
                f"(a shorter interval floods the service with status checks), got {kwargs['poll_interval']!r}"
            )
        if "max_response_bytes" in kwargs and not kwargs["max_response_bytes"] > 0:
            raise ConfigurationError(f"{where}: extra 'max_response_bytes' must be > 0, got {kwargs['max_response_bytes']!r}")
        if "transient_error_budget" in kwargs and kwargs["transient_error_budget"] < 0:
            raise ConfigurationError(f"{where}: extra 'transient_error_budget' must be >= 0")
        if "extra_headers" in kwargs:
            headers = kwargs["extra_headers"]
            bad = [k for k, v in headers.items() if not isinstance(v, str)]
            if bad:
                raise ConfigurationError(f"{where}: extra_headers values must be strings (bad: {', '.join(map(str, bad))})")
            if any(k.lower() == "authorization" for k in headers):
                raise ConfigurationError(f"{where}: put the token in the password field, not in extra_headers")
            if any(k.lower() == "proxy-authorization" for k in headers):
                # Through a CONNECT tunnel this header would reach the service, not the proxy.
                raise ConfigurationError(f"{where}: put the proxy's credentials in the 'proxy' extra, not in extra_headers")
            for name, value in headers.items():
                if not _HEADER_NAME.fullmatch(name):
                    raise ConfigurationError(
                        f"{where}: extra_headers name {name!r} is not a valid HTTP header name "
                        "(letters, digits and !#$%&'*+-.^_`|~ only; no spaces, colons or line breaks)"
                    )
                if _CONTROL_BUT_TAB.search(value):
                    # The value may be a secret (a tenant key): name the header only.
                    raise ConfigurationError(
                        f"{where}: extra_headers value of {name!r} contains a line break or other control character "
                        "(the value is not shown)"
                    )
            kwargs["extra_headers"] = tuple(sorted(headers.items()))
        _check_auth(kwargs, login, password, where)
        if "proxy" in kwargs:
            kwargs["proxy"] = _proxy(kwargs["proxy"], where)
        _check_tls_settings(base_url, kwargs, where)
        kwargs["dialect_options"] = _dialect_options(kwargs.get("dialect", "native"), kwargs.get("dialect_options"), where)
        return cls(base_url=base_url, token=password or None, conn_id=conn_id, **kwargs)


def _check_auth(kwargs: dict[str, Any], login: str | None, password: str | None, where: str) -> None:
    """The auth scheme and the fields it needs, checked now; never echoes a secret."""
    auth_type = kwargs.get("auth_type", "bearer")
    if auth_type not in AUTH_TYPES:
        raise ConfigurationError(f"{where}: extra 'auth_type' must be one of {', '.join(AUTH_TYPES)}, got {auth_type!r}")
    header = kwargs.get("auth_header")
    if header is not None and auth_type != "header":
        raise ConfigurationError(
            f"{where}: extra 'auth_header' is only used with auth_type 'header' (auth_type is {auth_type!r})"
        )
    if auth_type == "basic":
        if not login or not password:
            raise ConfigurationError(f"{where}: auth_type 'basic' needs both the login and the password field")
        if ":" in login or _CONTROL.search(login):
            raise ConfigurationError(f"{where}: the login of auth_type 'basic' must not contain ':' or control characters")
        kwargs["login"] = login
    elif auth_type == "header":
        if not header or not _HEADER_NAME.fullmatch(header):
            raise ConfigurationError(
                f"{where}: auth_type 'header' needs extra 'auth_header', a valid HTTP header name such as X-API-Key"
                + (f" (got {header!r})" if header else "")
            )
        if header.lower() in {name.lower() for name, _ in kwargs.get("extra_headers", ())}:
            raise ConfigurationError(f"{where}: header {header!r} is both auth_header and in extra_headers; keep one")
        if not password:
            raise ConfigurationError(f"{where}: auth_type 'header' sends the password field in {header!r}, but it is empty")
    elif auth_type == "none" and password:
        raise ConfigurationError(f"{where}: auth_type is 'none' but the password field is set; clear it or choose an auth_type")


def redact_url(url: str) -> str:
    """``url`` with any user info (``user:password@``) replaced by ``***@``, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{tail}"


def _proxy(value: str, where: str) -> str:
    """The ``proxy`` extra checked; messages show it with its credentials masked."""
    shown = redact_url(value)
    if _CONTROL.search(value) or " " in value:
        raise ConfigurationError(f"{where}: extra 'proxy' contains a space, line break or other control character")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigurationError(f"{where}: extra 'proxy' {shown!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{where}: extra 'proxy' must be an http:// or https:// URL such as http://proxy.example.com:3128 "
            f"(SOCKS proxies are not supported), got {shown!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(f"{where}: extra 'proxy' must be scheme://[user:password@]host[:port] only, got {shown!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _check_tls_settings(base_url: str, kwargs: dict[str, Any], where: str) -> None:
    """The TLS files exist, are readable, hold what their field says and fit together, now
    (on the machine reading the connection) rather than at the first request of a wait."""
    for key in ("ca_bundle", "client_cert", "client_key"):
        if key in kwargs:
            kwargs[key] = _readable_file(key, kwargs[key], where)
    if "client_key" in kwargs and "client_cert" not in kwargs:
        raise ConfigurationError(f"{where}: extra 'client_key' is set without 'client_cert'; set both, or neither")
    if "ca_bundle" in kwargs and kwargs.get("verify_tls") is False:
        raise ConfigurationError(
            f"{where}: extra 'ca_bundle' is set but verify_tls is false, so nothing would be checked against it; "
            "remove one of them"
        )
    tls_files = [key for key in ("ca_bundle", "client_cert") if key in kwargs]
    proxy_tls = str(kwargs.get("proxy", "")).startswith("https:")
    if tls_files and not base_url.startswith("https:") and not proxy_tls:
        raise ConfigurationError(
            f"{where}: extra {tls_files[0]!r} is set but the Base URL {base_url!r} is plain http, so no TLS is used; "
            "use https:// (or remove the TLS settings)"
        )
    if not tls_files:
        return
    texts: dict[str, str] = {
        key: _read_text(key, kwargs[key], where) for key in ("ca_bundle", "client_cert", "client_key") if key in kwargs
    }
    if "ca_bundle" in texts and _PEM_CERT not in texts["ca_bundle"]:
        raise ConfigurationError(
            f"{where}: extra 'ca_bundle' {kwargs['ca_bundle']!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )
    if "client_cert" in texts:
        if _PEM_CERT not in texts["client_cert"]:
            raise ConfigurationError(
                f"{where}: extra 'client_cert' {kwargs['client_cert']!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            )
        key_field = "client_key" if "client_key" in texts else "client_cert"
        if not _PEM_KEY.search(texts[key_field]):
            raise ConfigurationError(
                f"{where}: extra {key_field!r} {kwargs[key_field]!r} holds no PEM private key"
                + ("; set 'client_key' to the key's file" if key_field == "client_cert" else "")
            )
        if _PEM_ENCRYPTED.search(texts[key_field]):
            raise ConfigurationError(
                f"{where}: the private key in extra {key_field!r} {kwargs[key_field]!r} is encrypted with a passphrase, "
                "which the connection has no field for; store it unencrypted, readable only by the Airflow user"
            )
    # Parse them as the session will, so a key that does not match its certificate fails now.
    load_tls_files(
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        kwargs.get("ca_bundle"),
        kwargs.get("client_cert"),
        kwargs.get("client_key"),
        where,
    )


def load_tls_files(
    context: ssl.SSLContext, ca_bundle: str | None, client_cert: str | None, client_key: str | None, where: str
) -> None:
    """Load the connection's CA bundle and client certificate into ``context``; errors name the field."""

    def no_passphrase() -> str:
        # Without a callback OpenSSL would prompt on the terminal, hanging a worker or triggerer.
        raise ConfigurationError(
            f"{where}: the private key of 'client_cert' is encrypted with a passphrase; store it unencrypted"
        )

    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                f"{where}: extra 'ca_bundle' {ca_bundle!r} cannot be loaded as PEM CA certificates ({exc})"
            ) from None
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key, password=no_passphrase)
        except (ssl.SSLError, OSError) as exc:
            mismatch = getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH"
            fields = "'client_cert' and 'client_key'" if client_key else "'client_cert'"
            problem = "the private key does not belong to the certificate" if mismatch else f"cannot be loaded ({exc})"
            raise ConfigurationError(
                f"{where}: extra {fields} ({client_cert!r}{', ' + repr(client_key) if client_key else ''}): {problem}"
            ) from None


def _readable_file(key: str, value: str, where: str) -> str:
    if _CONTROL.search(value):
        raise ConfigurationError(f"{where}: extra {key!r} contains a line break or other control character")
    if not os.path.isabs(value):
        raise ConfigurationError(
            f"{where}: extra {key!r} must be an absolute path (workers and the triggerer run in different "
            f"directories), got {value!r}"
        )
    if not os.path.exists(value):
        raise ConfigurationError(f"{where}: extra {key!r} names {value!r}, which does not exist on this machine")
    if not os.path.isfile(value):
        raise ConfigurationError(f"{where}: extra {key!r} names {value!r}, which is not a file")
    return value


def _read_text(key: str, path: str, where: str) -> str:
    try:
        with open(path, "rb") as file:
            return file.read().decode("ascii", errors="replace")
    except OSError as exc:
        raise ConfigurationError(
            f"{where}: extra {key!r} names {path!r}, which this process (uid {os.getuid()}) cannot read: {exc.strerror}"
        ) from None


def _dialect_options(dialect: str, options: dict[str, Any] | str | None, where: str) -> str:
    """Validate the dialect with its options now, so a bad spec fails when the connection is read."""
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: extra 'dialect_options' is not valid JSON ({exc})") from None
        if not isinstance(options, dict):
            raise ConfigurationError(f"{where}: extra 'dialect_options' must be a JSON object")
    # Imported here: get_provider_info() reads this module, and Airflow calls it in every CLI command.
    from jobservice_provider.core.dialects import dialect_class, get_dialect

    try:
        dialect_class(dialect)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: extra 'dialect': {exc.message}") from None
    text = json.dumps(options, sort_keys=True) if options else ""
    try:
        get_dialect(dialect, text)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: extra 'dialect_options' (dialect {dialect!r}): {exc.message}") from None
    return text


def installed_dialects() -> dict[str, EntryPoint]:
    """The dialects other packages register under :data:`DIALECT_ENTRY_POINT_GROUP`, by name
    (read from the installed metadata on every call, so a package installed later is found).
    A name of a built-in dialect is skipped: the built-in one always wins."""
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=DIALECT_ENTRY_POINT_GROUP):
        if entry_point.name not in DIALECTS:
            found.setdefault(entry_point.name, entry_point)
    return found


def dialect_names() -> list[str]:
    """Every name the ``dialect`` extra may take: the built-in dialects, then the installed ones."""
    return [*DIALECTS, *sorted(installed_dialects())]


def _parse_extra(extra: Mapping[str, Any] | str | None, where: str) -> dict[str, Any]:
    if extra is None or extra == "":
        return {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: extra is not valid JSON ({exc})") from exc
    if not isinstance(extra, Mapping):
        raise ConfigurationError(f"{where}: extra must be a JSON object")
    parsed: dict[str, Any] = {}
    for raw_key, value in extra.items():
        key = raw_key[len(_FORM_PREFIX) :] if raw_key.startswith(_FORM_PREFIX) else raw_key
        if key not in KNOWN_EXTRAS:
            raise ConfigurationError(f"{where}: unknown extra {raw_key!r}; allowed: {', '.join(KNOWN_EXTRAS)}")
        if value is None or value == "":
            continue  # an empty form field means "use the default"
        parsed[key] = value
    return parsed


def _base_url(host: str | None, schema: str | None, port: int | None, where: str) -> str:
    if not host:
        raise ConfigurationError(f"{where}: host is empty; set it to the service's base URL, e.g. https://jobs.example.com")
    if "://" not in host:
        scheme = schema if schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    parts = _split_host(host, where)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{where}: host {host!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{where}: host {host!r} must not carry a query or fragment")
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _split_host(host: str, where: str) -> SplitResult:
    """The Base URL split, refusing what would leak or break later; never echoes a password."""
    if _CONTROL.search(host) or " " in host:
        raise ConfigurationError(f"{where}: host {redact_url(host)!r} contains a space, line break or other control character")
    parts = urlsplit(host)
    if "@" in parts.netloc:
        # A password here would be printed in every error message and log line naming the URL.
        raise ConfigurationError(
            f"{where}: host {redact_url(host)!r} must not contain user info (user:password@); "
            "put the API token in the password field (API token) and a proxy's credentials in the 'proxy' extra"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigurationError(f"{where}: host {host!r} has an invalid port") from None
    return parts
