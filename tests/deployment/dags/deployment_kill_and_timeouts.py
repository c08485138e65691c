"""Long jobs that only end when Airflow ends the task: marked failed, or out of time."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

NEVER_ENDS = {"seconds": 3600}
COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "tags": ["deployment-test"]}

with DAG(dag_id="deployment_mark_failed", **COMMON):
    SubmitAndWaitOperator(task_id="long", job_type="sleep", job_params=NEVER_ENDS, poll_interval=5, deferrable=True)

with DAG(dag_id="deployment_sensor_timeout", **COMMON):
    start = SubmitAndWaitOperator(task_id="start", job_type="sleep", job_params=NEVER_ENDS, wait_for_completion=False)
    wait = JobCompleteSensor(
        task_id="wait",
        job_id="{{ ti.xcom_pull(task_ids='start', key='job_id') }}",
        poll_interval=2,
        timeout=20,
        retries=2,  # a sensor timeout must not be retried
        deferrable=True,
    )
    start >> wait

with DAG(dag_id="deployment_operator_timeout", **COMMON):
    SubmitAndWaitOperator(
        task_id="long",
        job_type="sleep",
        job_params=NEVER_ENDS,
        poll_interval=2,
        deferrable=True,
        execution_timeout=timedelta(seconds=20),
    )
