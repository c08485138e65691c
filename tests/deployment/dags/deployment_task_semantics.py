"""Issue 12 in a real deployment: timeouts counted as Airflow counts them, and the cancel switches."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

NEVER_ENDS = {"seconds": 3600}
COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "tags": ["deployment-test"]}

# A sensor's short timeout ends the task no more than min(2 s, 5%) early: 10 s here, 0.5 s margin.
with DAG(dag_id="deployment_sensor_short_timeout", **COMMON):
    start = SubmitAndWaitOperator(task_id="start", job_type="sleep", job_params=NEVER_ENDS, wait_for_completion=False)
    wait = JobCompleteSensor(
        task_id="wait",
        job_id="{{ ti.xcom_pull(task_ids='start', key='job_id') }}",
        poll_interval=2,
        timeout=10,
        retries=2,  # a sensor timeout is not retried
        deferrable=True,
    )
    start >> wait

# Out of time with cancel_on_timeout=False: the job keeps running through Airflow's own on_kill
# after the timeout, and the retry reattaches to it.
with DAG(dag_id="deployment_timeout_keeps_job", **COMMON):
    SubmitAndWaitOperator(
        task_id="long",
        job_type="sleep",
        job_params=NEVER_ENDS,
        poll_interval=2,
        deferrable=True,
        execution_timeout=timedelta(seconds=8),
        cancel_on_timeout=False,
        cancel_on_kill=True,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
