"""DAGs for tests/e2e/test_task_semantics.py: each shows one thing a DAG author relies on (issue 12)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator

COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "tags": ["e2e-semantics"]}

# 1. Out of time but cancel_on_timeout=False: the job lives on, Airflow's on_kill after the
# timeout does not cancel it (cancel_on_kill is about kills), and the retry reattaches to it.
with DAG(dag_id="semantics_timeout_keeps_job", **COMMON):
    SubmitAndWaitOperator(
        task_id="long",
        job_type="sleep",
        job_params={"seconds": 120},
        poll_interval=0.5,
        deferrable=True,
        execution_timeout=timedelta(seconds=4),
        cancel_on_timeout=False,
        cancel_on_kill=True,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
