"""Submit a job to the job service, wait for it in the triggerer, and use its result downstream.

Needs a connection ``jobservice_default`` (the README's demo points it at the embedded
local service).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator

with DAG(
    dag_id="example_submit_and_wait",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "jobservice"],
) as dag:
    # [START howto_submit_and_wait]
    train = SubmitAndWaitOperator(
        task_id="train_model",
        job_type="sleep",  # the local service's demo job type; use your service's types
        job_params={"seconds": 6, "steps": 3, "result": {"model": "churn-v2", "auc": 0.91}},
        poll_interval=2,
        deferrable=True,  # wait in the triggerer, not in a worker slot
        execution_timeout=timedelta(minutes=10),  # bounds submit + wait; the job is cancelled when it fires
    )
    # [END howto_submit_and_wait]

    @task
    def report(result: dict) -> str:
        return f"model {result['model']} scored AUC {result['auc']}"

    report(train.output)
