"""The Airflow idioms users look for, in real Airflow (``dag.test()``) against the local service (issue 13, item 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REPO, conn_json

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]
DAGS = Path(__file__).parent / "dags"
RUNNER = Path(__file__).parent / "run_dag.py"
# A connection nothing listens on: a task that used it instead of the templated one fails.
NOWHERE = "http://127.0.0.1:9"


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, **connections: str) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of ``dag_id`` (tests/e2e/dags/idioms_dags.py) in its own process, with the
    given ``AIRFLOW_CONN_<NAME>`` connections; its summary and everything it printed."""
    environ = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    environ.update({f"AIRFLOW_CONN_{name.upper()}": value for name, value in connections.items()})
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(DAGS / "idioms_dags.py"), dag_id, json.dumps(conf or {})],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        cwd=REPO,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAGTEST-RESULT ")]
    assert lines, output[-4000:]
    return json.loads(lines[-1].removeprefix("DAGTEST-RESULT ")), output


def user_xcoms(task: dict[str, Any]) -> dict[str, Any]:
    """A task's XComs without Airflow's own extra-link entries (``_link_<class>``)."""
    return {key: value for key, value in task["xcom"].items() if not key.startswith("_link_")}


def test_do_xcom_push_false_pushes_nothing(local_service: Any) -> None:
    summary, output = run_dag("idioms_no_xcom_push", jobservice_default=conn_json(local_service.base_url, local_service.token))
    tasks = summary["tasks"]
    assert summary["state"] == "success", (summary, output[-3000:])
    assert all(task["state"] == "success" for task in tasks.values()), tasks
    for quiet in ("watch_quietly", "deferred_quietly", "on_worker_quietly"):
        assert user_xcoms(tasks[quiet]) == {}, (quiet, tasks[quiet]["xcom"])
    # The submitter without do_xcom_push=False still pushes its job id (and returns it).
    submitted = user_xcoms(tasks["submit"])
    assert submitted["job_id"].startswith("j_") and submitted["return_value"] == submitted["job_id"], submitted


def test_jobservice_conn_id_is_templated(local_service: Any) -> None:
    summary, output = run_dag(
        "idioms_templated_conn",
        {"conn": "jobservice_templated"},
        jobservice_default=conn_json(NOWHERE, "unused"),
        jobservice_templated=conn_json(local_service.base_url, local_service.token),
    )
    tasks = summary["tasks"]
    assert summary["state"] == "success", (summary, output[-3000:])
    assert tasks["run"]["xcom"]["return_value"] == {"via": "templated"}, tasks["run"]
    assert tasks["watch"]["xcom"]["return_value"]["status"] == "SUCCEEDED", tasks["watch"]
    assert "127.0.0.1:9" not in output
