"""Keeping browsers out: the rules every request meets before its token is even looked at (pure).

A development service runs on the same machine as a browser. Any web page can make that
browser send a "simple" cross-site POST (``text/plain`` body, no preflight) to 127.0.0.1, and
DNS rebinding lets a page read the answers under its own host name. So:

* ``host-not-allowed``: the ``Host`` header must name the address the service listens on,
  ``localhost``, or a name given with ``--allowed-host`` (rebinding needs a name of the
  attacker's; the port is not compared, so proxies and port forwards keep working);
* ``cross-origin-request``: a request carrying an ``Origin`` other than the service's own, or
  ``Sec-Fetch-Site: cross-site``/``same-site``, came from a web page: refused;
* ``unsupported-media-type``: a body must be sent as ``application/json``, which no page can
  send cross-site without a CORS preflight, and this service never answers one. (An empty body
  may say anything: HTTP clients label a bodiless POST ``application/octet-stream``.)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Iterable

JSON_MEDIA_TYPE = "application/json"
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
#: what a page's fetch says about where it comes from; these two are another site.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})


def host_name(authority: str) -> str | None:
    """The host name of a ``Host`` header value (lower case, no port, no brackets), or ``None`` if malformed."""
    text = authority.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[1:end], text[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
    else:
        name, colon, port = text.partition(":")
        if colon and not port.isdigit():
            return None
    name = name.rstrip(".").lower()
    if not name or any(c.isspace() or c in "/\\@?#" for c in name):
        return None
    return name


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class HostRule:
    """Which ``Host`` names this service answers to.

    :param names: allowed host names (lower case).
    :param any_ip_literal: also any IP address (the service listens on every interface; an
        address is never a rebinding attacker's name).
    """

    names: frozenset[str]
    any_ip_literal: bool = False

    @classmethod
    def for_listen_address(cls, host: str, extra: Iterable[str] = ()) -> HostRule:
        """The rule for a service listening on ``host``, plus the ``--allowed-host`` names ``extra``."""
        listen = host.strip().strip("[]").rstrip(".").lower()
        names = {"localhost", *(name.strip().strip("[]").rstrip(".").lower() for name in extra if name.strip())}
        wildcard = listen in WILDCARD_HOSTS
        if wildcard:
            names.update(name.lower() for name in (socket.gethostname(), socket.getfqdn()) if name)
        else:
            names.add(listen)
        if listen == "localhost":
            names.update({"127.0.0.1", "::1"})
        return cls(frozenset(names), any_ip_literal=wildcard)

    def allows(self, name: str) -> bool:
        return name in self.names or (self.any_ip_literal and _is_ip_literal(name))

    def describe(self) -> str:
        shown = ", ".join(sorted(self.names))
        return shown + (" or an IP address" if self.any_ip_literal else "")


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the HTTP status, the rule's slug and what exactly was wrong."""

    status: int
    rule: str
    detail: str


def check_request(
    rule: HostRule,
    *,
    host: str | None,
    origin: str | None,
    fetch_site: str | None,
    content_type: str | None,
    has_body: bool,
) -> Refusal | None:
    """The first browser rule the request breaks, or ``None``."""
    name = host_name(host) if host is not None else None
    if name is None or not rule.allows(name):
        given = "no Host header" if host is None else f"Host {host!r}"
        return Refusal(
            421,
            "host-not-allowed",
            f"{given} does not name this service; it answers to {rule.describe()} "
            "(a web page's DNS rebinding would send its own name; start the service with --allowed-host NAME "
            "to allow another name)",
        )
    if origin is not None and origin.strip().lower() != f"http://{host}".strip().lower():
        return Refusal(
            403,
            "cross-origin-request",
            f"requests from web pages are refused (Origin {origin!r} is not this service); "
            "this is an API for programs, not for browsers",
        )
    if fetch_site is not None and fetch_site.strip().lower() in FOREIGN_FETCH_SITES:
        return Refusal(
            403,
            "cross-origin-request",
            f"requests from web pages are refused (Sec-Fetch-Site: {fetch_site}); this is an API for programs, not for browsers",
        )
    if has_body:
        media_type = (content_type or "").partition(";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            given = f"Content-Type {content_type!r}" if content_type is not None else "no Content-Type"
            return Refusal(
                415,
                "unsupported-media-type",
                f"request bodies must be sent as {JSON_MEDIA_TYPE}, got {given} "
                "(the rule that keeps web pages from sending this service a cross-site form or text POST)",
            )
    return None
