"""Every example DAG imports cleanly and runs to success with dag.test() against the local service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REPO, conn_json
from tests.support.dag_test import run_dag_file

from jobservice_provider._compat import HAS_TASK_STATE_STORE, TRIGGER_ON_KILL

pytestmark = pytest.mark.e2e
EXAMPLES = sorted((REPO / "dags_examples").glob("example_*.py"))
RUNNER = REPO / "scripts" / "dagtest_runner.py"


def test_example_dags_import_without_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags_examples"))
    assert bag.import_errors == {}
    assert {"example_submit_and_wait", "example_job_complete_sensor"} <= set(bag.dag_ids)
    assert len(bag.dags) == len(EXAMPLES)


def run_dag_test(dag_file: Path, local_service: Any) -> tuple[dict[str, Any], str]:
    env = os.environ.copy()
    env["AIRFLOW_CONN_JOBSERVICE_DEFAULT"] = conn_json(local_service.base_url, local_service.token)
    return run_dag_file(dag_file, env=env, runner=RUNNER)


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("dag_file", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_dag_runs_to_success(dag_file: Path, local_service: Any) -> None:
    summary, output = run_dag_test(dag_file, local_service)
    assert summary["state"] == "success", output[-4000:]
    assert set(summary["tasks"].values()) == {"success"}, summary
    assert "running trigger in line" in output  # the deferrable path really ran the trigger

    xcom = summary["xcom"]
    if summary["dag_id"] == "example_submit_and_wait":
        assert xcom["train_model"]["return_value"] == {"model": "churn-v2", "auc": 0.91}
        assert xcom["train_model"]["job_id"].startswith("j_")
        # Where Airflow never calls the trigger's on_kill (3.2), the deferring operator says so.
        assert ("keeps running then; cancel it with CancelJobOperator" in output) is (not TRIGGER_ON_KILL)
        if HAS_TASK_STATE_STORE:
            # Persisted in Airflow's task state store before deferring, so a retry can reattach.
            assert summary["task_state"]["train_model"]["jobservice_job_id"] == xcom["train_model"]["job_id"]
        else:  # Airflow 3.2: nothing to persist to; a retry finds the job by its idempotency key
            assert summary["task_state"] == {}
        assert xcom["report"]["return_value"] == "model churn-v2 scored AUC 0.91"
    else:
        job_id = xcom["start_job"]["job_id"]
        assert xcom["wait_for_job"]["return_value"]["id"] == job_id
        assert xcom["wait_for_job"]["return_value"]["status"] == "SUCCEEDED"
