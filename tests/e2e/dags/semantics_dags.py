"""DAGs for tests/e2e/test_dag_semantics.py: each shows one thing a DAG author relies on (issue 12)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor

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

# 2. soft_fail on every path of a deferrable sensor: a job FAILED before the first poke, a job
# failing while the sensor is deferred, and the sensor's timeout all skip the task.
with DAG(dag_id="semantics_soft_fail", **COMMON):
    JobCompleteSensor(
        task_id="failed_before_first_poke",
        job_id="{{ dag_run.conf['failed_job'] }}",
        soft_fail=True,
        deferrable=True,
        poll_interval=0.5,
        timeout=60,
    )
    start = SubmitAndWaitOperator(
        task_id="start_failing_job",
        job_type="sleep",
        job_params={"seconds": 3, "fail": "failed on purpose"},
        wait_for_completion=False,
    )
    start >> JobCompleteSensor(
        task_id="fails_while_deferred",
        job_id="{{ ti.xcom_pull(task_ids='start_failing_job', key='job_id') }}",
        soft_fail=True,
        deferrable=True,
        poll_interval=0.5,
        timeout=60,
    )
    JobCompleteSensor(
        task_id="times_out",
        job_id="{{ dag_run.conf['endless_job'] }}",
        soft_fail=True,
        deferrable=True,
        poll_interval=0.5,
        timeout=4,
    )

# 4. Lifecycle targets: RUNNING is reached by a job that has already SUCCEEDED (it has been
# running); a FAILED one still fails the wait, since failure_statuses are checked first.
with DAG(dag_id="semantics_lifecycle_targets", **COMMON):
    for name in ("succeeded", "failed"):
        JobCompleteSensor(
            task_id=f"running_on_{name}",
            job_id="{{ dag_run.conf['" + name + "'] }}",
            target_statuses=["RUNNING"],
            deferrable=True,
            poll_interval=0.5,
            timeout=60,
        )

# 5. Deadlines as Airflow measures them: execution_timeout from execute, the sensor's timeout
# from its first try's start; the trigger reports either at most min(2 s, 5%) early.
with DAG(dag_id="semantics_deadlines", **COMMON):
    SubmitAndWaitOperator(
        task_id="operator_6s",
        job_type="sleep",
        job_params={"seconds": 600},
        poll_interval=0.5,
        deferrable=True,
        execution_timeout=timedelta(seconds=6),
    )
    JobCompleteSensor(
        task_id="sensor_4s",
        job_id="{{ dag_run.conf['endless_job'] }}",
        deferrable=True,
        poll_interval=0.5,
        timeout=4,
    )

# 3. not_found_grace, the "job exists" wait: a job that appears 10 s after the sensor started is
# waited for; one that never appears fails the task once the grace ends, naming it.
with DAG(dag_id="semantics_not_found_grace", **COMMON):
    for name, grace in (("appears_late", 30), ("never_appears", 5)):
        JobCompleteSensor(
            task_id=name,
            job_id="{{ dag_run.conf['" + name + "'] }}",
            target_statuses=["RUNNING"],
            not_found_grace=grace,
            deferrable=True,
            poll_interval=0.5,
            timeout=120,
        )


class WithoutTaskStateStore(SubmitAndWaitOperator):
    """The operator as it runs on Airflow 3.2 (or with a task state store that fails): a retry can
    find the job of an earlier try only by its idempotency key."""

    def execute(self, context: Any) -> Any:
        return super().execute({k: v for k, v in context.items() if k != "task_state_store"})  # type: ignore[arg-type]


# 7. Ids of 250 characters (Airflow's limit): the key is shortened stably, so submit works and the
# retry (without a task state store, so only the key can find it) reattaches to the same job.
LONG_DAG_ID = "semantics_long_ids_" + "d" * (250 - len("semantics_long_ids_"))
LONG_TASK_ID = "t" * 250
with DAG(dag_id=LONG_DAG_ID, **COMMON):
    WithoutTaskStateStore(
        task_id=LONG_TASK_ID,
        job_type="sleep",
        job_params={"seconds": 120},
        poll_interval=0.5,
        deferrable=True,
        execution_timeout=timedelta(seconds=3),
        cancel_on_timeout=False,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

# 8. Mapped tasks with a custom key: .partial(idempotency_key="k") over three params is three jobs
# (the key is scoped by the map index); a key that varies with the index already is kept as is.
with DAG(dag_id="semantics_mapped_keys", **COMMON):
    SubmitAndWaitOperator.partial(
        task_id="shared_key", job_type="sleep", idempotency_key="k", deferrable=True, poll_interval=0.5
    ).expand(job_params=[{"seconds": 0.5, "result": {"n": n}} for n in range(3)])
    SubmitAndWaitOperator.partial(
        task_id="templated_key",
        job_type="sleep",
        job_params={"seconds": 0},
        idempotency_key="{{ run_id }}-t{{ ti.map_index }}",
        deferrable=True,
        poll_interval=0.5,
    ).expand(meta=[{"n": 0}, {"n": 1}])
    SubmitAndWaitOperator.partial(
        task_id="expanded_key", job_type="sleep", job_params={"seconds": 0}, deferrable=True, poll_interval=0.5
    ).expand(idempotency_key=["{{ run_id }}-a", "{{ run_id }}-b"])

# 10. REATTACH notices changed inputs: cleared with other job_params (here from the environment
# at parse time, as an edited DAG file would change them), the task submits a new job.
with DAG(dag_id="semantics_changed_inputs", **COMMON):
    SubmitAndWaitOperator(
        task_id="compute",
        job_type="sleep",
        job_params={"seconds": 0.5, "result": {"version": os.environ.get("SEMANTICS_INPUT_VERSION", "1")}},
        deferrable=True,
        poll_interval=0.5,
    )
