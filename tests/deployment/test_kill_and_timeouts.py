"""In a real deployment: a user's "mark failed" cancels the job; timeouts end waits as Airflow's own errors."""

from __future__ import annotations

import json
import time
from datetime import datetime

import httpx
from tests.deployment.airflow_deployment import AirflowDeployment, poll


def _duration(ti: dict[str, object]) -> float:
    start, end = (datetime.fromisoformat(str(ti[key]).replace("Z", "+00:00")) for key in ("start_date", "end_date"))
    return (end - start).total_seconds()


def test_marking_a_deferred_task_failed_cancels_its_job_within_one_poll_interval(deployment: AirflowDeployment) -> None:
    dag_id = "deployment_mark_failed"
    run_id = deployment.trigger_dag(dag_id)
    deployment.wait_for_task_state(dag_id, run_id, "long", {"deferred"}, timeout=120)
    job_id = deployment.xcom(dag_id, run_id, "long", key="job_id")
    assert deployment.service_job(job_id)["status"] == "RUNNING"

    # Airflow calls on_kill only on a trigger that a triggerer runs: wait until the trigger
    # itself (not the worker, which logs the same words before deferring) has polled.
    seen_by_trigger = f"[jobservice_provider.triggers.jobservice.JobStatusTrigger] Job {job_id}: RUNNING"

    def trigger_running() -> bool | None:
        return True if seen_by_trigger in deployment.task_log(dag_id, run_id, "long") else None

    poll("the trigger to run in the triggerer", trigger_running, timeout=60, interval=0.5, on_timeout=deployment.diagnostics)
    deployment.patch_ti_state(dag_id, run_id, "long", "failed")
    marked = time.monotonic()

    def cancelled() -> bool | None:
        return True if deployment.service_job(job_id)["status"] == "CANCELLED" else None

    poll(f"job {job_id} to be CANCELLED", cancelled, timeout=5, interval=0.2, on_timeout=deployment.diagnostics)
    assert time.monotonic() - marked <= 5  # the DAG's poll_interval
    log = deployment.task_log(dag_id, run_id, "long")
    assert f"cancelled job {job_id}" in log, log[-3000:]


def test_sensor_timeout_fails_as_a_sensor_timeout_in_about_its_timeout(deployment: AirflowDeployment) -> None:
    dag_id = "deployment_sensor_timeout"
    run_id = deployment.trigger_dag(dag_id)
    deployment.wait_for_run_state(dag_id, run_id, {"failed"}, timeout=180)
    ti = deployment.task_instance(dag_id, run_id, "wait")
    assert ti["state"] == "failed" and ti["try_number"] == 1, ti  # no retry despite retries=2
    assert 18 <= _duration(ti) <= 40, ti
    log = json.dumps(deployment.task_log_entries(dag_id, run_id, "wait"))  # with the exception's details
    assert "AirflowSensorTimeout" in log and "Deadline reached" in log, log[-3000:]
    job_id = deployment.xcom(dag_id, run_id, "start", key="job_id")
    assert deployment.service_job(job_id)["status"] == "RUNNING"  # a sensor watches; it does not cancel
    httpx.post(deployment.service.url(f"/v1/jobs/{job_id}/cancel"), headers=deployment.service.headers, timeout=30)


def test_operator_execution_timeout_times_out_and_cancels_the_job(deployment: AirflowDeployment) -> None:
    dag_id = "deployment_operator_timeout"
    run_id = deployment.trigger_dag(dag_id)
    deployment.wait_for_run_state(dag_id, run_id, {"failed"}, timeout=180)
    ti = deployment.task_instance(dag_id, run_id, "long")
    assert ti["state"] == "failed" and 18 <= _duration(ti) <= 45, ti
    log = json.dumps(deployment.task_log_entries(dag_id, run_id, "long"))  # with the exception's details
    assert "AirflowTaskTimeout" in log and "execution_timeout" in log, log[-3000:]
    job_id = deployment.xcom(dag_id, run_id, "long", key="job_id")
    assert log.count(f"Cancelled job {job_id}") == 1, log[-3000:]  # once, not again by on_kill
    assert deployment.service_job(job_id)["status"] == "CANCELLED"
