"""Run one DAG file with ``dag.test()`` and print a one-line JSON summary at the end.

Usage: python scripts/dagtest_runner.py DAG_FILE [DAG_ID]

Used by the README's demo and by the e2e tests, each in its own process so that Airflow's
logging setup and configuration stay out of the caller. The environment (AIRFLOW_HOME,
connections) must be set by the caller; the metadata DB must be migrated.
"""

from __future__ import annotations

import json
import sys
from typing import Any

RESULT_PREFIX = "DAGTEST-RESULT "


def main(dag_file: str, dag_id: str | None = None) -> int:
    from airflow.dag_processing.dagbag import DagBag

    try:
        from airflow.models.task_state_store import TaskStateStoreModel
    except ImportError:  # Airflow 3.2 has no task state store (docs/compatibility.md)
        TaskStateStoreModel = None
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    bag = DagBag(dag_folder=dag_file)
    if bag.import_errors:
        print(RESULT_PREFIX + json.dumps({"import_errors": bag.import_errors}), flush=True)
        return 2
    dag = bag.get_dag(dag_id) if dag_id else next(iter(bag.dags.values()))
    dag_run = dag.test()
    summary: dict[str, Any] = {
        "dag_id": dag.dag_id,
        "run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "tasks": {},
        "xcom": {},
        "task_state": {},
    }
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            summary["tasks"][ti.task_id] = str(ti.state)
        for row in session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id)):
            summary["xcom"].setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
        if TaskStateStoreModel is not None:
            states = select(TaskStateStoreModel).where(
                TaskStateStoreModel.dag_id == dag.dag_id, TaskStateStoreModel.run_id == dag_run.run_id
            )
            for state in session.scalars(states):
                summary["task_state"].setdefault(state.task_id, {})[state.key] = json.loads(state.value)
    print(RESULT_PREFIX + json.dumps(summary, default=str), flush=True)
    return 0 if summary["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
