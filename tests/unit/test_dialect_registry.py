"""The dialect registry: built-in names, dialects of other distributions found by entry point, and
the errors a connection gets when a name is unknown or an installed dialect is broken (issue 15).

Distributions are made for real: a ``*.dist-info`` directory with ``entry_points.txt`` on
``sys.path`` is what an installed package is to ``importlib.metadata``.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobservice_provider import get_provider_info
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import (
    BUILT_IN,
    ENTRY_POINT_GROUP,
    NativeDialect,
    dialect_names,
    get_dialect,
)
from jobservice_provider.core.errors import ConfigurationError


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path where the test installs distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("team_")]:
        del sys.modules[name]


def install(site: Path, dist: str, entry_points: dict[str, str], module: str = "", source: str = "") -> None:
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")
    if module:
        (site / f"{module}.py").write_text(textwrap.dedent(source))


TEAM_DIALECT = """
    from jobservice_provider.core.dialects import NativeDialect

    class TeamDialect(NativeDialect):
        name = "team"
"""


def test_an_installed_dialect_is_found_by_name_and_listed(site: Path) -> None:
    install(site, "team-dialect", {"team": "team_dialect:TeamDialect"}, "team_dialect", TEAM_DIALECT)
    dialect = get_dialect("team")
    assert type(dialect).__name__ == "TeamDialect" and isinstance(dialect, NativeDialect)
    assert dialect_names()[:3] == list(BUILT_IN) and "team" in dialect_names()
    # The connection form offers it too.
    (form,) = get_provider_info()["connection-types"]
    assert "team" in form["conn-fields"]["dialect"]["schema"]["enum"]
    config = ServiceConfig.from_connection_fields(conn_id="c", host="http://h", extra={"dialect": "team"})
    assert config.dialect == "team"


def test_a_built_in_name_cannot_be_taken_over(site: Path) -> None:
    install(site, "impostor", {"native": "team_impostor:TeamDialect"}, "team_impostor", TEAM_DIALECT)
    assert type(get_dialect("native")) is NativeDialect
    assert dialect_names().count("native") == 1


def test_an_unknown_name_lists_the_installed_dialects(site: Path) -> None:
    install(site, "team-dialect", {"team": "team_dialect:TeamDialect"}, "team_dialect", TEAM_DIALECT)
    with pytest.raises(ConfigurationError) as caught:
        ServiceConfig.from_connection_fields(conn_id="c", host="http://h", extra={"dialect": "teem"})
    message = str(caught.value)
    assert "connection 'c': extra 'dialect': unknown dialect 'teem'; installed dialects: native, ray, declarative" in message
    assert message.endswith("team") or ", team" in message


@pytest.mark.parametrize(
    ("value", "source", "problem"),
    [
        ("team_broken:TeamDialect", "import team_nonexistent_module\n", "cannot be loaded: ModuleNotFoundError"),
        (
            "team_notadialect:TeamDialect",
            "class TeamDialect:\n    pass\n",
            "not a subclass of jobservice_provider.core.dialects.Dialect",
        ),
    ],
)
def test_a_broken_installed_dialect_is_a_clear_error(site: Path, value: str, source: str, problem: str) -> None:
    module = value.split(":")[0]
    install(site, module.replace("_", "-"), {"team": value}, module, source)
    with pytest.raises(ConfigurationError) as caught:
        ServiceConfig.from_connection_fields(conn_id="c", host="http://h", extra={"dialect": "team"})
    message = str(caught.value)
    assert f"dialect 'team' (entry point '{value}' in group '{ENTRY_POINT_GROUP}')" in message and problem in message


def test_the_value_objects_check_what_they_are_given() -> None:
    from jobservice_provider import ListQuery, SubmitRequest
    from jobservice_provider.core.errors import InvalidRequestError

    assert ListQuery(status=["running"]).status == ("RUNNING",) == ListQuery(status="running").status
    assert hash(ListQuery(status=["running"])) == hash(ListQuery(status=("RUNNING",)))
    for bad, message in [
        (lambda: ListQuery(limit=0), "limit must be a positive integer, got 0"),
        (lambda: ListQuery(created_after="soon"), "created_after must be an ISO 8601 date-time, got 'soon'"),
        (lambda: SubmitRequest(""), "job_type must be a non-empty string, got ''"),
        (lambda: SubmitRequest("x", ["a"]), "params must be an object, got list"),  # type: ignore[arg-type]
        (lambda: SubmitRequest("x", meta="m"), "meta must be an object, got str"),  # type: ignore[arg-type]
        (lambda: SubmitRequest("x", idempotency_key=""), "idempotency_key must be a non-empty string, got ''"),
    ]:
        with pytest.raises(InvalidRequestError, match=re.escape(message)):
            bad()
