"""DAGs for tests/e2e/test_airflow_idioms.py: the Airflow idioms users look for (issue 13, item 6)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "tags": ["e2e-idioms"]}

# do_xcom_push=False: the operator and the sensor push nothing (no job_id, no result), deferred
# or not; the submitter without it pushes its job id as usual, for the sensor to read.
with DAG(dag_id="idioms_no_xcom_push", **COMMON):
    submit = SubmitAndWaitOperator(
        task_id="submit",
        job_type="sleep",
        job_params={"seconds": 1, "result": {"n": 1}},
        wait_for_completion=False,
    )
    submit >> JobCompleteSensor(
        task_id="watch_quietly",
        job_id="{{ ti.xcom_pull(task_ids='submit', key='job_id') }}",
        deferrable=True,
        poll_interval=0.5,
        timeout=60,
        do_xcom_push=False,
    )
    SubmitAndWaitOperator(
        task_id="deferred_quietly",
        job_type="sleep",
        job_params={"seconds": 1, "result": {"n": 2}},
        poll_interval=0.5,
        deferrable=True,
        do_xcom_push=False,
    )
    SubmitAndWaitOperator(
        task_id="on_worker_quietly",
        job_type="sleep",
        job_params={"seconds": 1, "result": {"n": 3}},
        poll_interval=0.5,
        deferrable=False,
        do_xcom_push=False,
    )

# jobservice_conn_id is templated: the connection is picked by a DAG param at run time.
with DAG(dag_id="idioms_templated_conn", params={"conn": "jobservice_default"}, **COMMON):
    run = SubmitAndWaitOperator(
        task_id="run",
        job_type="sleep",
        job_params={"seconds": 1, "result": {"via": "templated"}},
        jobservice_conn_id="{{ params.conn }}",
        poll_interval=0.5,
        deferrable=True,
    )
    run >> JobCompleteSensor(
        task_id="watch",
        job_id="{{ ti.xcom_pull(task_ids='run', key='job_id') }}",
        jobservice_conn_id="{{ params.conn }}",
        deferrable=True,
        poll_interval=0.5,
        timeout=60,
    )
