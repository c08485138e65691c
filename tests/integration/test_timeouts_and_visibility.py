"""Airflow owns the timeout; the wait stays visible; many waits share one event loop without blocking it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException, AirflowTaskTimeout, TaskDeferred
from tests.conftest import REPO
from tests.support.airflow_context import make_context

from jobservice_provider.core.dialects import SubmitRequest
from jobservice_provider.core.status import JobStatus
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor
from jobservice_provider.triggers.jobservice import JobStatusTrigger

# "<time> [info     ] <message> [<logger>] loc=…" as Airflow's structlog renders a task log line
TASK_LOG_LINE = re.compile(r"^\S+ \[\w+\s*\] (.*?) \[[\w.]+\] loc=", re.M)
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("jobservice_conn")]


def trigger_event(trigger: JobStatusTrigger) -> dict[str, Any]:
    """Rebuild the trigger from its serialized form, as the triggerer does, and take its event."""
    _, kwargs = trigger.serialize()

    async def first() -> dict[str, Any]:
        return (await anext(JobStatusTrigger(**kwargs).run())).payload

    return asyncio.run(first())


@pytest.mark.parametrize("soft_fail", [False, True], ids=["fails", "soft_fail"])
def test_sensor_timeout_ends_as_a_sensor_timeout_through_the_deadline_event(soft_fail: bool) -> None:
    job = JobServiceHook().submit(SubmitRequest("sleep", {"seconds": 600}))
    sensor = JobCompleteSensor(task_id="s", job_id=job.id, poll_interval=0.5, timeout=5, soft_fail=soft_fail, deferrable=True)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    assert 4 < deferred.value.timeout.total_seconds() <= 5  # the time remaining, handed to Airflow as its backstop
    started = time.monotonic()
    event = trigger_event(deferred.value.trigger)
    assert event["status"] == "timeout" and 2 < time.monotonic() - started < 5  # before Airflow's own timeout
    expected = AirflowSkipException if soft_fail else AirflowSensorTimeout
    with pytest.raises(expected):
        sensor.resume_execution("execute_complete", {"event": event}, context)
    assert JobServiceHook().get_job(job.id).status is JobStatus.RUNNING  # a sensor never cancels by default


def test_operator_execution_timeout_ends_as_task_timeout_and_cancels_the_job() -> None:
    from datetime import timedelta

    op = SubmitAndWaitOperator(
        task_id="t", job_type="sleep", job_params={"seconds": 600}, poll_interval=0.5, execution_timeout=timedelta(seconds=5)
    )
    op.deferrable = True
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    job_id = context["ti"].xcom["job_id"]
    assert 4 < deferred.value.timeout.total_seconds() <= 5
    event = trigger_event(deferred.value.trigger)
    assert event["status"] == "timeout"
    with pytest.raises(AirflowTaskTimeout, match="execution_timeout"):
        op.resume_execution("execute_complete", {"event": event}, context)
    assert JobServiceHook().get_job(job_id).status is JobStatus.CANCELLED


def test_deferred_wait_log_shows_each_change_once_and_remote_lines_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    op = SubmitAndWaitOperator(task_id="t", job_type="sleep", job_params={"seconds": 2.5, "steps": 5}, poll_interval=0.2)
    op.deferrable = True
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    result = op.execute_complete(context, trigger_event(deferred.value.trigger))
    job_id = context["ti"].xcom["job_id"]
    # Airflow's task loggers (structlog) write the task log to stdout here.
    messages = [m[1] for m in TASK_LOG_LINE.finditer(capsys.readouterr().out)]
    remote = [m for m in messages if m.startswith(f"[job {job_id}]")]
    assert remote == [f"[job {job_id}] step {i}/5" for i in range(1, 6)]  # in order, none twice
    changes = [m for m in messages if m.startswith(f"Job {job_id}: RUNNING")]
    assert len(changes) == len(set(changes)) >= 3  # each status/progress change logged once
    assert f"Job {job_id}: RUNNING 2/5 (40%) step 2/5" in changes
    assert result == {"slept": 2.5}


def test_200_triggers_share_one_loop_without_slow_callbacks() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.loop_probe", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=os.environ.copy(),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("LOOP-PROBE ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    probe = json.loads(lines[-1].removeprefix("LOOP-PROBE "))
    assert probe["statuses"] == ["success"] * 200
    assert probe["slow_callbacks"] == []  # asyncio debug: no callback ran longer than 50 ms
