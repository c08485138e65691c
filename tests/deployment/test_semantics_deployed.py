"""Issue 12 against the real scheduler and triggerer: what dag.test() cannot show (timeouts enforced
for real, Airflow's own on_kill after a timeout, retries scheduled by the scheduler).

Both DAGs start together (one fixture), so the tier grows by the longest of them, not their sum.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from tests.deployment.airflow_deployment import AirflowDeployment

SENSOR_DAG, OPERATOR_DAG = "deployment_sensor_short_timeout", "deployment_timeout_keeps_job"


@pytest.fixture(scope="module")
def runs(deployment: AirflowDeployment) -> dict[str, str]:
    return {dag_id: deployment.trigger_dag(dag_id) for dag_id in (SENSOR_DAG, OPERATOR_DAG)}


def _seconds(ti: dict[str, Any], since: str = "start_date", until: str = "end_date") -> float:
    start, end = (datetime.fromisoformat(str(ti[key]).replace("Z", "+00:00")) for key in (since, until))
    return (end - start).total_seconds()


def test_a_short_sensor_timeout_is_reported_at_most_its_margin_early(deployment: AirflowDeployment, runs: dict[str, str]) -> None:
    run_id = runs[SENSOR_DAG]
    deployment.wait_for_run_state(SENSOR_DAG, run_id, {"failed"}, timeout=180)
    ti = deployment.task_instance(SENSOR_DAG, run_id, "wait")
    job_id = deployment.xcom(SENSOR_DAG, run_id, "start", key="job_id")
    httpx.post(deployment.service.url(f"/v1/jobs/{job_id}/cancel"), headers=deployment.service.headers, timeout=30)
    assert ti["state"] == "failed" and ti["try_number"] == 1, ti  # AirflowSensorTimeout: no retry
    entries = deployment.task_log_entries(SENSOR_DAG, run_id, "wait")
    assert "AirflowSensorTimeout" in json.dumps(entries), json.dumps(entries)[-3000:]
    # The timeout is counted from the first try's start and reported at most the margin early
    # (min(2 s, 5%) = 0.5 s, never 2 s): the trigger's event comes 9.5-10 s after the start. The
    # task then ends once Airflow has resumed it on a worker: 10.9 s after the start on an idle
    # 2-core machine, up to ~6 s more while other test suites load it.
    fired = [e["timestamp"] for e in entries if str(e.get("event")).startswith(f"Wait for job {job_id} ended: timeout")]
    assert len(fired) == 1, entries
    started = _at(ti["start_date"])
    assert 10 - 0.5 <= (_at(fired[0]) - started).total_seconds() <= 10.2, (ti, fired)
    assert 10 - 0.5 <= _seconds(ti) <= 12 + 6, ti


def _at(value: str) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def test_cancel_on_timeout_off_keeps_the_job_through_airflows_on_kill_and_the_retry_reattaches(
    deployment: AirflowDeployment, runs: dict[str, str]
) -> None:
    run_id = runs[OPERATOR_DAG]
    deployment.wait_for_run_state(OPERATOR_DAG, run_id, {"failed"}, timeout=240)
    ti = deployment.task_instance(OPERATOR_DAG, run_id, "long")
    job_id = deployment.xcom(OPERATOR_DAG, run_id, "long", key="job_id")
    try:
        assert ti["try_number"] == 2, ti
        jobs = [
            job
            for job in deployment.service_jobs(type="sleep")
            if (job.get("key") or "").startswith(f"airflow:{OPERATOR_DAG}:long:{run_id}:")
        ]
        assert [(job["id"], job["status"]) for job in jobs] == [(job_id, "RUNNING")], jobs  # one job in all
        second = deployment.task_log(OPERATOR_DAG, run_id, "long", try_number=2)
        assert f"Try 2, retry_strategy REATTACH: reattaching to job {job_id}" in second, second[-3000:]
        for try_number in (1, 2):
            log = deployment.task_log(OPERATOR_DAG, run_id, "long", try_number=try_number)
            assert "AirflowTaskTimeout" in json.dumps(
                deployment.task_log_entries(OPERATOR_DAG, run_id, "long", try_number=try_number)
            )
            assert f"Cancelled job {job_id}" not in log, log[-3000:]
    finally:
        httpx.post(deployment.service.url(f"/v1/jobs/{job_id}/cancel"), headers=deployment.service.headers, timeout=30)
