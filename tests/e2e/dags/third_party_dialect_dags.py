"""The DAG of tests/e2e/test_third_party_dialect.py: nothing in it names a dialect; the connection does."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

with DAG(dag_id="third_party_dialect", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["e2e"]):
    run = SubmitAndWaitOperator(
        task_id="run",
        job_type="sleep",
        job_params={"seconds": 1, "steps": 2, "result": {"rows": 7}},
        meta={"team": "data"},
        poll_interval=0.5,
        deferrable=True,
    )
    run >> JobCompleteSensor(
        task_id="check",
        job_id="{{ ti.xcom_pull(task_ids='run', key='job_id') }}",
        poll_interval=0.5,
        deferrable=True,
        timeout=60,
    )
