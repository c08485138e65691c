"""Run one example DAG with ``dag.test()`` inside the packaging tier's clean environment.

Usage: CLEAN_PYTHON -I tests/packaging/clean_env_dag.py DAG_FILE DAG_ID WORKDIR

Runs with the clean environment's interpreter in isolated mode (``-I``: neither this directory nor
``PYTHONPATH`` is on ``sys.path``), so the provider and ``jobservice_local`` can only come from the
installed wheels. Starts ``jobservice-local`` from its installed wheel in WORKDIR, points
``jobservice_default`` at it and prints one ``DAGTEST-RESULT {json}`` line: the run's state, each
task's state and XComs, and where the provider and the local service were imported from. The
caller sets AIRFLOW_HOME (with a migrated database) and the rest of Airflow's environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

RESULT_PREFIX = "DAGTEST-RESULT "


def main(dag_file: str, dag_id: str, workdir: str) -> int:
    import jobservice_local
    import jobservice_provider
    from jobservice_local.testing import LocalServiceProcess

    with LocalServiceProcess(Path(workdir)) as service:
        os.environ["AIRFLOW_CONN_JOBSERVICE_DEFAULT"] = json.dumps(
            {"conn_type": "jobservice", "host": service.base_url, "password": service.token}
        )
        from airflow.dag_processing.dagbag import DagBag
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        bag = DagBag(dag_folder=dag_file)
        summary: dict[str, Any] = {
            "provider_file": jobservice_provider.__file__,
            "local_file": jobservice_local.__file__,
            "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        }
        if not bag.import_errors:
            dag_run = bag.get_dag(dag_id).test()
            summary.update(state=str(dag_run.state), tasks={}, xcom={})
            with create_session() as session:
                for ti in dag_run.get_task_instances(session=session):
                    summary["tasks"][ti.task_id] = str(ti.state)
                for row in session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_id)):
                    summary["xcom"].setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
    print(RESULT_PREFIX + json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
