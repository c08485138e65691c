"""Service configuration, parsed once from a connection's fields into a frozen object.

Extras are allow-listed: an unknown key is an error naming it, never silently
turned into a header. Precedence: operator argument > connection extra > default.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from jobservice_provider.core.errors import ConfigurationError

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_TRANSIENT_ERROR_BUDGET = 600.0
# Large enough for any result the operator's max_result_bytes lets through by default (1 MiB)
# many times over; a bigger answer is more likely a mistake than data.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DIALECTS = ("native", "ray", "declarative")

# extra key -> (python type(s) accepted, description); the single list of allowed extras.
KNOWN_EXTRAS: dict[str, tuple[tuple[type, ...], str]] = {
    "dialect": ((str,), "how to speak to the service; one of " + ", ".join(DIALECTS)),
    "dialect_options": ((dict, str), "the dialect's configuration object (the declarative dialect's spec); see docs/dialects.md"),
    "verify_tls": ((bool,), "verify the server's TLS certificate"),
    "request_timeout": ((int, float), "seconds before one HTTP request is abandoned"),
    "poll_interval": ((int, float), "default seconds between status checks"),
    "transient_error_budget": ((int, float), "seconds of continuous transient failure tolerated"),
    "extra_headers": ((dict,), "additional HTTP headers sent with every request"),
    "max_response_bytes": ((int,), "largest response body read from the service, in bytes"),
}
# Airflow's connection form may store fields as extra__<conn_type>__<name>.
_FORM_PREFIX = "extra__jobservice__"


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Everything the core client needs to reach one service."""

    base_url: str
    token: str | None = dataclasses.field(default=None, repr=False)
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

    @property
    def service_key(self) -> tuple[str | None, str, str]:
        """Identifies one service for sharing sessions between waits."""
        return (self.conn_id, self.base_url, self.dialect)

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
    ) -> ServiceConfig:
        """Build a config from a connection's fields, naming the connection in every error."""
        where = f"connection {conn_id!r}" if conn_id else "connection"
        extras = _parse_extra(extra, where)
        base_url = _base_url(host, schema, port, where)
        kwargs: dict[str, Any] = {}
        for key, value in extras.items():
            types, _ = KNOWN_EXTRAS[key]
            if isinstance(value, bool) and bool not in types:
                raise ConfigurationError(f"{where}: extra {key!r} must be a number, got {value!r}")
            if not isinstance(value, types):
                wanted = " or ".join(t.__name__ for t in types)
                raise ConfigurationError(f"{where}: extra {key!r} must be {wanted}, got {type(value).__name__} {value!r}")
            kwargs[key] = value
        if "dialect" in kwargs and kwargs["dialect"] not in DIALECTS:
            raise ConfigurationError(f"{where}: extra 'dialect' must be one of {', '.join(DIALECTS)}, got {kwargs['dialect']!r}")
        for key in ("request_timeout", "poll_interval"):
            if key in kwargs and not kwargs[key] > 0:
                raise ConfigurationError(f"{where}: extra {key!r} must be > 0, got {kwargs[key]!r}")
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
            kwargs["extra_headers"] = tuple(sorted(headers.items()))
        kwargs["dialect_options"] = _dialect_options(kwargs.get("dialect", "native"), kwargs.get("dialect_options"), where)
        return cls(base_url=base_url, token=password or None, conn_id=conn_id, **kwargs)


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
    from jobservice_provider.core.dialects import get_dialect

    text = json.dumps(options, sort_keys=True) if options else ""
    try:
        get_dialect(dialect, text)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: extra 'dialect_options' (dialect {dialect!r}): {exc.message}") from None
    return text


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
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{where}: host {host!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{where}: host {host!r} must not carry a query or fragment")
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
