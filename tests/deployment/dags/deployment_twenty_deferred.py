"""Twenty deferred SubmitAndWaitOperator tasks at once (mapped), for the triggerer-kill test."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator

TASKS = 20
JOB_SECONDS = 40  # long enough that all twenty are still running when the triggerer dies

with DAG(
    dag_id="deployment_twenty_deferred",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=TASKS + 4,  # all twenty must be deferred at the same time
    default_args={"retries": 0},  # a lost wait must fail the run, not hide behind a retry
    tags=["deployment-test"],
) as dag:
    SubmitAndWaitOperator.partial(
        task_id="wait",
        job_type="sleep",
        meta={"run_id": "{{ run_id }}", "map_index": "{{ ti.map_index }}"},
        poll_interval=2,
        deferrable=True,
        execution_timeout=timedelta(minutes=8),
    ).expand(job_params=[{"seconds": JOB_SECONDS, "steps": 5, "result": {"n": n}} for n in range(TASKS)])
