"""DAGs for tests/prefect: each runs a flow of the test runner (tests/prefect/flows.py) through the ``prefect`` preset.

The connection ``jobservice_default`` is the preset; the job type is a deployment's id, which
the tests put in Airflow Variables ``prefect_deployment_<flow>`` (AIRFLOW_VAR_… in the environment).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "tags": ["prefect"]}
RESULT = {"answer": 42, "rows": [1, 2, 3], "note": 'ünïcode & "quotes"'}

with DAG(dag_id="prefect_submit_and_wait", **COMMON):
    compute = SubmitAndWaitOperator(
        task_id="compute",
        job_type="{{ var.value.prefect_deployment_echo }}",
        job_params={"result": RESULT},
        poll_interval=0.5,
        deferrable=True,
        execution_timeout=timedelta(minutes=3),
    )

    @task
    def report(result: dict) -> str:
        return f"answer={result['answer']}"

    report(compute.output)

with DAG(dag_id="prefect_sensor", **COMMON):
    JobCompleteSensor(
        task_id="wait_for_run",
        job_id="{{ dag_run.conf['flow_run_id'] }}",
        deferrable=True,
        poll_interval=0.5,
        timeout=180,
    )

with DAG(dag_id="prefect_failing", **COMMON):
    SubmitAndWaitOperator(
        task_id="fails",
        job_type="{{ var.value.prefect_deployment_fail }}",
        job_params={"message": "bad row 17"},
        poll_interval=0.5,
        deferrable=True,
        execution_timeout=timedelta(minutes=3),
    )

with DAG(dag_id="prefect_timeout", **COMMON):
    SubmitAndWaitOperator(
        task_id="too_long",
        job_type="{{ var.value.prefect_deployment_long }}",
        job_params={"seconds": 300},
        poll_interval=0.5,
        deferrable=True,
        execution_timeout=timedelta(seconds=20),
    )

with DAG(dag_id="prefect_chatty", **COMMON):
    SubmitAndWaitOperator(
        task_id="chatty",
        job_type="{{ var.value.prefect_deployment_chatty }}",
        job_params={"lines": 500, "seconds": 3},
        poll_interval=0.5,
        deferrable=True,
        # Prefect ships a run's last log records after the run completed (in batches, every 2 s);
        # those reach the task log in the tail, so it must hold them all.
        log_tail_lines=1000,
        execution_timeout=timedelta(minutes=3),
    )
