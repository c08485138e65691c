"""Issue 13 (item 6) in a real deployment: the "Job Service job" extra link of each task instance."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "tags": ["deployment-test"]}

# Long enough to look at the links while both tasks are deferred; do_xcom_push=False on the
# operator: the link must not depend on XCom of ours.
with DAG(dag_id="deployment_job_links", **COMMON):
    SubmitAndWaitOperator(
        task_id="run",
        job_type="sleep",
        job_params={"seconds": 12, "steps": 4, "result": {"linked": True}},
        poll_interval=1,
        deferrable=True,
        do_xcom_push=False,
    )
    start = SubmitAndWaitOperator(
        task_id="start",
        job_type="sleep",
        job_params={"seconds": 12, "steps": 4},
        wait_for_completion=False,
    )
    start >> JobCompleteSensor(
        task_id="watch",
        job_id="{{ ti.xcom_pull(task_ids='start', key='job_id') }}",
        poll_interval=1,
        timeout=120,
        deferrable=True,
    )
