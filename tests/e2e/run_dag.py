"""Run one DAG with ``dag.test()`` and print a JSON summary of every try (for tests/e2e).

Usage: python tests/e2e/run_dag.py DAG_FILE DAG_ID [RUN_CONF_JSON [LOGICAL_DATE]]

With a LOGICAL_DATE (ISO) used before, ``dag.test()`` clears that run's task instances and runs
them again, as a user's "clear" does (the task state store of the run is kept).

The caller sets the environment (AIRFLOW_HOME with a migrated DB, DAGS_FOLDER holding DAG_FILE,
connections). The last stdout line starting with ``DAGTEST-RESULT `` is the summary: the run's
state, and per task its state, try number, start/end dates, XComs and task state store values.
"""

from __future__ import annotations

import json
import sys
from typing import Any

RESULT_PREFIX = "DAGTEST-RESULT "


def main(dag_file: str, dag_id: str, run_conf: str = "{}", logical_date: str = "") -> int:
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
    dag = bag.get_dag(dag_id)
    if logical_date:
        from datetime import datetime

        when = datetime.fromisoformat(logical_date)
        dag_run = dag.test(run_conf=json.loads(run_conf), logical_date=when, run_after=when)
    else:
        dag_run = dag.test(run_conf=json.loads(run_conf))
    summary: dict[str, Any] = {"dag_id": dag.dag_id, "run_id": dag_run.run_id, "state": str(dag_run.state), "tasks": {}}
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            summary["tasks"][name] = {
                "state": str(ti.state),
                "try_number": ti.try_number,
                "start_date": ti.start_date.isoformat() if ti.start_date else None,
                "end_date": ti.end_date.isoformat() if ti.end_date else None,
                "xcom": {},
                "task_state": {},
            }
        for row in session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id, map_indexes=None)):
            name = row.task_id if row.map_index < 0 else f"{row.task_id}[{row.map_index}]"
            summary["tasks"][name]["xcom"][row.key] = XComModel.deserialize_value(row)
        if TaskStateStoreModel is not None:
            states = select(TaskStateStoreModel).where(
                TaskStateStoreModel.dag_id == dag.dag_id, TaskStateStoreModel.run_id == dag_run.run_id
            )
            for state in session.scalars(states):
                # Airflow 3.4 calls the map index of a stored value its region_index.
                index = state.map_index if hasattr(state, "map_index") else state.region_index
                name = state.task_id if index < 0 else f"{state.task_id}[{index}]"
                summary["tasks"][name]["task_state"][state.key] = json.loads(state.value)
    print(RESULT_PREFIX + json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
