"""Start a job in one task and wait for it with a sensor in another.

The sensor suits jobs started elsewhere (another DAG, a CI pipeline, a person): it only
watches, and by default never cancels the job it watches.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

with DAG(
    dag_id="example_job_complete_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "jobservice"],
) as dag:
    start = SubmitAndWaitOperator(
        task_id="start_job",
        job_type="sleep",
        job_params={"seconds": 4, "steps": 2},
        wait_for_completion=False,  # returns the job id at once
    )

    # [START howto_job_complete_sensor]
    wait = JobCompleteSensor(
        task_id="wait_for_job",
        job_id="{{ ti.xcom_pull(task_ids='start_job', key='job_id') }}",
        poll_interval=2,
        timeout=600,  # the sensor's own timeout bounds the wait, also while deferred
        not_found_grace=60,  # the "job exists" wait: an id the service does not show yet is waited for
        deferrable=True,
    )
    # [END howto_job_complete_sensor]

    start >> wait
