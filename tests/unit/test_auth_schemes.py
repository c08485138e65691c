"""Authentication schemes of the connection: what each sends, and what each refuses, never echoing a secret."""

from __future__ import annotations

import base64

import pytest

from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.errors import ConfigurationError

SECRET = "s3cr3t-value-123"


def config(
    auth_type: str | None = None, login: str | None = None, password: str | None = SECRET, **extra: object
) -> ServiceConfig:
    extras = {**extra, **({"auth_type": auth_type} if auth_type else {})}
    return ServiceConfig.from_connection_fields(
        conn_id="c", host="https://jobs.example.com", login=login, password=password, extra=extras
    )


def test_bearer_is_the_default_and_ignores_a_login() -> None:
    assert config().auth_headers() == (("Authorization", f"Bearer {SECRET}"),)
    assert config(login="someone").auth_headers() == (("Authorization", f"Bearer {SECRET}"),)
    assert config(password=None).auth_headers() == ()


def test_basic_sends_login_and_password() -> None:
    (header,) = config("basic", login="airflow").auth_headers()
    assert header[0] == "Authorization" and base64.b64decode(header[1].removeprefix("Basic ")) == f"airflow:{SECRET}".encode()


def test_header_sends_the_password_alone_in_the_named_header() -> None:
    assert config("header", auth_header="X-API-Key").auth_headers() == (("X-API-Key", SECRET),)


def test_none_sends_nothing() -> None:
    assert config("none", password=None).auth_headers() == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"auth_type": "digest"}, "must be one of bearer, basic, header, none"),
        ({"auth_type": "basic"}, "needs both the login and the password"),
        ({"auth_type": "basic", "login": "a:b"}, "must not contain ':'"),
        ({"auth_type": "header"}, "needs extra 'auth_header'"),
        ({"auth_type": "header", "auth_header": "X API Key"}, "valid HTTP header name"),
        ({"auth_type": "header", "auth_header": "X-Key", "password": None}, "but it is empty"),
        (
            {"auth_type": "header", "auth_header": "X-Key", "extra_headers": {"x-key": "other"}},
            "both auth_header and in extra_headers",
        ),
        ({"auth_type": "none"}, "password field is set"),
        ({"auth_header": "X-Key"}, "only used with auth_type 'header'"),
    ],
)
def test_a_scheme_without_what_it_needs_is_refused_naming_it(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        config(**kwargs)  # type: ignore[arg-type]
    assert "connection 'c'" in str(info.value) and SECRET not in str(info.value)


def test_the_secret_is_never_in_the_configs_repr() -> None:
    for made in (config(), config("basic", login="airflow"), config("header", auth_header="X-API-Key")):
        assert SECRET not in repr(made)
