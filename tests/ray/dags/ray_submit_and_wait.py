"""Submit a shell entrypoint to Ray, wait in the triggerer, use its result downstream.

Runs against whatever ``jobservice_default`` points at: the Ray tier points it at a real
Ray head, once with ``dialect: ray`` and once with the declarative Ray spec.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator

# The job's last log line is its result (params.result_from_logs with the ray dialect;
# the declarative Ray spec always reads the result that way).
ENTRYPOINT = "python -c \"import json; print('crunching numbers'); print(json.dumps({'answer': 42}))\""

with DAG(
    dag_id="ray_submit_and_wait",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["test", "ray"],
) as dag:
    compute = SubmitAndWaitOperator(
        task_id="compute",
        job_type="shell",
        job_params={"entrypoint": ENTRYPOINT, "result_from_logs": True},
        poll_interval=1,
        deferrable=True,
        execution_timeout=timedelta(minutes=5),
    )

    @task
    def report(result: dict) -> str:
        return f"answer={result['answer']}"

    report(compute.output)
