"""A dialect from another distribution, registered through the entry point group
``jobservice_provider.dialects`` and named in the connection, runs a DAG end to end (issue 15).

The dialect is tests/support/dialect_pkg (its own pyproject.toml), installed into the test
environment by ``./dev``; the provider never imports it by path. The DAG runs in real Airflow
(``dag.test()`` in its own process, the deferrable operator and sensor through the triggerer's
code) against the real local service.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import conn_json
from tests.support.dag_test import run_dag_file

from jobservice_provider.core.dialects import ENTRY_POINT_GROUP
from jobservice_provider.hooks.jobservice import JobServiceHook

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]
DAGS = Path(__file__).parent / "dags"
PACKAGE = "jobservice-example-dialect"


@pytest.fixture(scope="module", autouse=True)
def example_dialect_installed() -> None:
    try:
        entry_points = distribution(PACKAGE).entry_points
    except PackageNotFoundError:
        pytest.skip(f"{PACKAGE} is not installed in this environment: ./dev installs it (tests/support/dialect_pkg)")
    assert [(e.group, e.name) for e in entry_points] == [(ENTRY_POINT_GROUP, "example")]


def test_a_dag_runs_through_a_dialect_registered_by_entry_point(local_service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"label": "team-x dialect"}
    environ = {
        **os.environ,
        "AIRFLOW_CONN_JOBSERVICE_DEFAULT": conn_json(
            local_service.base_url, local_service.token, dialect="example", dialect_options=options
        ),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    }
    summary, output = run_dag_file(DAGS / "third_party_dialect_dags.py", "third_party_dialect", env=environ)
    assert summary["state"] == "success", (summary, output[-4000:])
    run, check = summary["tasks"]["run"], summary["tasks"]["check"]
    assert run["xcom"]["return_value"] == {"rows": 7}
    assert check["state"] == "success" and check["xcom"]["return_value"]["status"] == "SUCCEEDED"
    # The built-in native dialect reads the job back: the third-party dialect submitted it
    # (it labels every job it submits with the connection's dialect_options).
    monkeypatch.setenv("AIRFLOW_CONN_JOBSERVICE_DEFAULT", conn_json(local_service.base_url, local_service.token))
    job = JobServiceHook().get_job(run["xcom"]["job_id"])
    assert job.meta == {"team": "data", "submitted_by": "team-x dialect"}


def test_an_unknown_dialect_names_the_installed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_JOBSERVICE_DEFAULT", conn_json("http://127.0.0.1:9", "t", dialect="exampel"))
    ok, message = JobServiceHook().test_connection()
    assert not ok
    assert "extra 'dialect': unknown dialect 'exampel'; installed dialects: native, ray, declarative, example" in message
