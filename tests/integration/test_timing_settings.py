"""The timing settings bound what they say against the real local service behind the fault proxy
(issue 13, item 6): the trigger's on_kill within ``[triggerer] on_kill_timeout``, a task's cancel
wait within ``[jobservice] cancel_wait``, the final log tail within ``[jobservice] log_tail_timeout``.
Requests are counted: each bound ends a wait that really retried."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from tests.integration.test_network_faults import asubmit, point_connection
from tests.support.fault_proxy import FaultProxy, status

from jobservice_provider._task import cancel_for_task
from jobservice_provider.core.dialects import SubmitRequest
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.triggers.jobservice import JobStatusTrigger

pytestmark = pytest.mark.integration
SLOW_DOWN = status(429, "slow down", Retry_After="1")


async def test_trigger_on_kill_gives_up_within_on_kill_timeout(local_service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__TRIGGERER__ON_KILL_TIMEOUT", "5")  # budget 4 s (before: always 25 s)
    job = await asubmit(local_service, 60)
    async with FaultProxy(local_service.base_url).running() as proxy:
        conn_id = point_connection(monkeypatch, proxy, local_service)
        proxy.fail_for(60, SLOW_DOWN, route="cancel")
        trigger = JobStatusTrigger(job_id=job.id, jobservice_conn_id=conn_id, cancel_on_kill=True)  # no task deadline
        started = time.monotonic()
        await trigger.on_kill()
        took = time.monotonic() - started
        assert 1.5 <= took <= 5.0, took  # retried for most of the 4 s budget (a retry that would pass it is not made)
        assert proxy.requests["cancel"] >= 2  # it retried, within the budget
        proxy.windows.clear()
        await trigger.on_kill()  # the service answers again: the job is cancelled
        assert (await JobServiceHook(conn_id).aget_job(job.id)).raw_status == "CANCELLED"


def test_a_task_waits_for_its_cancelled_job_at_most_cancel_wait(
    local_service: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__JOBSERVICE__CANCEL_WAIT", "2")  # before: always 60 s
    with FaultProxy(local_service.base_url).threaded() as proxy:
        hook = JobServiceHook(point_connection(monkeypatch, proxy, local_service))
        job = hook.submit(SubmitRequest("sleep", {"seconds": 60}))
        proxy.fail_for(60, SLOW_DOWN, route="cancel")
        log = logging.getLogger("test.cancel_wait")
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="test.cancel_wait"):
            cancel_for_task(hook, job.id, "the task was killed", log)
        took = time.monotonic() - started
        assert took <= 3.5, took
        assert proxy.requests["cancel"] >= 1
        (error,) = [r.getMessage() for r in caplog.records if r.name == "test.cancel_wait"]
        assert f"Could not cancel job {job.id} (the task was killed)" in error
        proxy.windows.clear()
        hook.cancel_job(job.id)


def test_the_final_log_tail_takes_at_most_log_tail_timeout(local_service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__JOBSERVICE__LOG_TAIL_TIMEOUT", "2")  # before: always 30 s
    with FaultProxy(local_service.base_url).threaded() as proxy:
        conn_id = point_connection(monkeypatch, proxy, local_service)
        hook = JobServiceHook(conn_id)
        job = hook.submit(SubmitRequest("sleep", {"seconds": 0, "steps": 2}))
        op = SubmitAndWaitOperator(task_id="tail", job_type="sleep", jobservice_conn_id=conn_id)
        proxy.fail_for(60, status(503, "down"), route="logs")
        started = time.monotonic()
        op._copy_log_tail(job.id, 0)  # never raises: the job's outcome is what counts
        took = time.monotonic() - started
        assert took <= 3.5, took  # the 30 s default retries on: 0.8 + 1.6 + 3.2 s of backoff alone
        assert proxy.requests["logs"] >= 2
