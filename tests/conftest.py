"""Shared test setup: a throwaway AIRFLOW_HOME (set before Airflow is imported) and the local job service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # makes tests.support importable in every tier

# Airflow reads its configuration at import time, so this must happen before any test imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="jobservice-test-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags_examples")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"

if TYPE_CHECKING:
    from tests.support.local_service import LocalService

TOKEN = "test-token-7f3a"


def pytest_configure(config: pytest.Config) -> None:
    from tests.support.shaping_proxy import network_mode

    try:
        network_mode()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    """Which network the integration tier meets: said once, at the top of every run."""
    from tests.support.shaping_proxy import NETWORK_ENV, Shape, network_mode

    if network_mode() == "direct":
        return f"jobservice test network: direct (loopback, bodies in one piece; {NETWORK_ENV}=shaped to shape it)"
    shape = Shape()
    return (
        f"jobservice test network: shaped ({NETWORK_ENV}=shaped): every service behind a proxy sending "
        f"{shape.segment_bytes}-byte segments {shape.segment_gap * 1000:g} ms apart, "
        f"client bytes held {shape.latency * 1000:g} ms"
    )


@pytest.fixture(scope="session")
def local_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """One embedded job service (python and command jobs enabled) for the whole session.

    Its ``base_url`` is a shaping proxy's in the shaped network mode (see ``LocalService``).
    """
    from tests.support.local_service import LocalService

    service = LocalService(
        tmp_path_factory.mktemp("local-service"), token=TOKEN, extra_args=["--allow-python", "--allow-command"]
    )
    with service:
        yield service


def conn_json(base_url: str, token: str | None, **extra: object) -> str:
    """An AIRFLOW_CONN_* value for a jobservice connection."""
    return json.dumps({"conn_type": "jobservice", "host": base_url, "password": token, "extra": extra})


@pytest.fixture
def jobservice_conn(local_service: LocalService, monkeypatch: pytest.MonkeyPatch) -> LocalService:
    """Point the default connection ``jobservice_default`` at the local service."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_JOBSERVICE_DEFAULT", conn_json(local_service.base_url, local_service.token, poll_interval=0.5)
    )
    return local_service


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the throwaway AIRFLOW_HOME (needed by dag.test())."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI every tier must really run: a skipped test fails the run instead of hiding a gap."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; in CI every tier must run", red=True)
