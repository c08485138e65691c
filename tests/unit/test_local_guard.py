"""jobservice_local.guard: the browser rules, pure."""

from __future__ import annotations

import pytest

from jobservice_local.guard import HostRule, check_request, host_name


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8765", "127.0.0.1"),
        ("LocalHost.", "localhost"),
        ("[::1]:80", "::1"),
        ("[::1]", "::1"),
        ("jobs.internal", "jobs.internal"),
        ("a:b", None),
        ("[::1", None),
        ("[::1]x", None),
        ("", None),
        ("evil.example/x", None),
        ("user@127.0.0.1", None),
    ],
)
def test_host_name(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_rules() -> None:
    loopback = HostRule.for_listen_address("127.0.0.1", ["Jobs.Internal"])
    assert loopback.allows("127.0.0.1") and loopback.allows("localhost") and loopback.allows("jobs.internal")
    assert not loopback.allows("::1") and not loopback.allows("10.0.0.1") and not loopback.allows("evil.example")
    assert HostRule.for_listen_address("localhost").allows("::1")
    everywhere = HostRule.for_listen_address("0.0.0.0")
    assert everywhere.allows("10.1.2.3") and everywhere.allows("localhost") and not everywhere.allows("evil.example")

    def check(**overrides: object) -> str | None:
        request: dict[str, object] = {
            "host": "127.0.0.1:8765",
            "origin": None,
            "fetch_site": None,
            "content_type": "application/json; charset=utf-8",
            "has_body": True,
        }
        request.update(overrides)
        refusal = check_request(loopback, **request)  # type: ignore[arg-type]
        return refusal.rule if refusal is not None else None

    assert check() is None
    assert check(host=None) == "host-not-allowed"
    assert check(host="evil.example:8765") == "host-not-allowed"
    assert check(origin="http://127.0.0.1:8765") is None
    assert check(origin="http://127.0.0.1:9999") == "cross-origin-request"
    assert check(origin="null") == "cross-origin-request"
    assert check(fetch_site="same-origin") is None and check(fetch_site="none") is None
    assert check(fetch_site="same-site") == "cross-origin-request"
    assert check(content_type="text/plain") == "unsupported-media-type"
    assert check(content_type=None) == "unsupported-media-type"
    assert check(content_type="application/octet-stream", has_body=False) is None


def test_what_aiohttp_refuses_becomes_a_problem_naming_the_limit() -> None:
    from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

    from jobservice_local.app import protocol_problem

    cases = [
        (LineTooLong(bytearray(b"/aaaa..."), 8190), 414, "uri-too-long"),  # C parser: the target
        (LineTooLong(b"GET /aaaa...", 8190), 414, "uri-too-long"),  # Python parser: the request line
        (LineTooLong(b"bbbb...", 8190), 431, "header-fields-too-large"),
        (LineTooLong(b"X-Big: bbbb...", 8190), 431, "header-fields-too-large"),
        (BadHttpMessage("Too many headers received"), 431, "header-fields-too-large"),
        (BadHttpMessage("Invalid method encountered: " + "x" * 1000), 400, "invalid-request"),
        (None, 500, "internal-error"),
    ]
    for exc, status, slug in cases:
        problem = protocol_problem(400 if exc is not None else 500, exc, None)
        assert (problem.status, problem.slug) == (status, slug), exc
        assert len(problem.detail) < 300
