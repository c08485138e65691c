"""The deployment tier: one real Airflow deployment per session (see docs/testing.md).

Every test in this directory is marked ``deployment``; browser tests are also marked ``browser``.
When a test fails, the tails of every component's output are attached to its report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import REPO
from tests.deployment.airflow_deployment import AirflowDeployment

TIER_DAGS = Path(__file__).parent / "dags"
_ready_in: dict[Path, float] = {}


def dag_files() -> list[Path]:
    """The example DAGs plus the tier's own test DAGs."""
    return [*sorted((REPO / "dags_examples").glob("*.py")), *sorted(TIER_DAGS.glob("*.py"))]


def dag_ids_in(files: list[Path]) -> set[str]:
    return {match for path in files for match in re.findall(r'dag_id="([^"]+)"', path.read_text())}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.deployment)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowDeployment]:
    """A running Airflow deployment (api-server, scheduler, dag-processor, triggerer) with every DAG parsed."""
    files = dag_files()
    started = time.monotonic()
    with AirflowDeployment(tmp_path_factory.mktemp("airflow-deployment"), dag_files=files) as running:
        running.wait_for_dags(dag_ids_in(files))
        _ready_in[running.logs_dir] = time.monotonic() - started
        yield running


REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report  # lets fixtures see whether the test failed
    running = item.funcargs.get("deployment") if hasattr(item, "funcargs") else None  # type: ignore[attr-defined]
    if report.failed and isinstance(running, AirflowDeployment):
        report.sections.append(("airflow deployment", f"files under {running.root}\n{running.diagnostics()}"))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for logs_dir, seconds in _ready_in.items():
        terminalreporter.write_line(f"airflow deployment: ready in {seconds:.0f}s; component logs in {logs_dir}")
