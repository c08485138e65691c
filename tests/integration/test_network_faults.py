"""Issue 11's acceptance, against the real local service behind the fault proxy (both network modes):
Retry-After of every kind never makes a tight loop or a long freeze, every call is retried,
background failures never hang a wait, and another job's record is never a success.

Requests and warnings are counted, never eyeballed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog.testing
from airflow.sdk.exceptions import TaskDeferred
from tests.conftest import conn_json
from tests.support.airflow_context import make_context
from tests.support.fault_proxy import FaultProxy, status

from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.dialects.native import NativeDialect
from jobservice_provider.core.errors import MalformedResponseError, TransientError
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.wait import Outcome, WaitSpec
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.sensors.jobservice import JobCompleteSensor
from jobservice_provider.triggers.jobservice import JobStatusTrigger

pytestmark = pytest.mark.integration

RETRY_AFTER_ZERO = status(429, "slow down", Retry_After="0")
DEFAULT_BACKOFF_FLOOR = RetryPolicy().base * (1 - RetryPolicy().jitter)  # the shortest first backoff


def _submit(service: Any, params: dict[str, Any]) -> Job:
    async def go() -> Job:
        config = ServiceConfig.from_connection_fields(conn_id="direct", host=service.base_url, password=service.token)
        async with JobServiceClient(config) as client:
            return await client.submit(SubmitRequest("sleep", params))

    return asyncio.run(go())


async def asubmit(service: Any, seconds: float, **params: Any) -> Job:
    config = ServiceConfig.from_connection_fields(conn_id="direct", host=service.base_url, password=service.token)
    async with JobServiceClient(config) as client:
        return await client.submit(SubmitRequest("sleep", {"seconds": seconds, **params}))


def point_connection(monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy, service: Any, **extra: Any) -> str:
    conn_id = f"faulty_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(proxy.url, service.token, **extra))
    return conn_id


@pytest.fixture
def threaded_proxy(local_service: Any) -> Iterator[FaultProxy]:
    """The fault proxy in a thread of its own, for the sync (worker) face."""
    with FaultProxy(local_service.base_url).threaded() as proxy:
        yield proxy


async def first_event(trigger: JobStatusTrigger) -> dict[str, Any]:
    _, kwargs = trigger.serialize()
    event = await anext(JobStatusTrigger(**kwargs).run())
    return dict(event.payload)


@contextlib.contextmanager
def counting_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every warning logged inside the block, whoever logged it: stdlib loggers (the hook, the
    watcher) through ``caplog``, and Airflow's structlog loggers (a trigger's ``self.log``)."""
    found: list[str] = []
    with caplog.at_level(logging.INFO), structlog.testing.capture_logs() as structured:
        yield found
    found.extend(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    found.extend(str(e.get("event")) for e in structured if e.get("log_level") in ("warning", "error", "critical"))


# -- Retry-After --------------------------------------------------------------------------------------
def test_retry_after_zero_for_10s_is_no_tight_loop_for_a_worker_wait(
    local_service: Any, threaded_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = _submit(local_service, {"seconds": 9})
    hook = JobServiceHook(point_connection(monkeypatch, threaded_proxy, local_service))
    threaded_proxy.fail_for(10, RETRY_AFTER_ZERO)
    with counting_warnings(caplog) as warnings:
        result = hook.wait_for_job(WaitSpec(job_id=job.id, poll=PollPolicy(interval=0.2)), check_now=True)
    assert result.outcome is Outcome.SUCCESS, result.message
    # Before: 11,000 requests in 5 s. Now: the backoff (1, 2, 4, 8 s) is the floor under Retry-After: 0.
    assert 3 <= threaded_proxy.faulted["status"] <= 10 / DEFAULT_BACKOFF_FLOOR, threaded_proxy.faulted
    assert 1 <= len(warnings) <= 10, warnings


async def test_retry_after_zero_for_10s_is_no_tight_loop_for_a_trigger(
    local_service: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = await asubmit(local_service, 9)
    async with FaultProxy(local_service.base_url).running() as proxy:
        conn_id = point_connection(monkeypatch, proxy, local_service)
        proxy.fail_for(10, RETRY_AFTER_ZERO)
        with counting_warnings(caplog) as warnings:
            event = await first_event(JobStatusTrigger(job_id=job.id, jobservice_conn_id=conn_id, poll_policy={"interval": 0.2}))
    assert event["status"] == "success", event
    # Before: 22,215 requests and 22,214 warnings in 10 s.
    assert 2 <= proxy.faulted["status"] <= 10 / DEFAULT_BACKOFF_FLOOR, proxy.faulted
    assert 1 <= len(warnings) <= 10, warnings


def test_retry_after_zero_on_a_keyed_submit_is_no_tight_loop(
    local_service: Any, threaded_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = JobServiceHook(point_connection(monkeypatch, threaded_proxy, local_service))
    threaded_proxy.fail_for(3, RETRY_AFTER_ZERO, route="submit")
    job = hook.submit(SubmitRequest("sleep", {"seconds": 0}, idempotency_key=f"k-{uuid.uuid4()}"))
    assert job.id.startswith("j_")
    assert 2 <= threaded_proxy.faulted["submit"] <= 3 / DEFAULT_BACKOFF_FLOOR + 1, threaded_proxy.faulted  # before: 3,164


@pytest.mark.parametrize("retry_after", ["999999", "inf"])
async def test_one_huge_retry_after_then_ok_ends_the_wait_within_one_backoff_cap(
    local_service: Any, monkeypatch: pytest.MonkeyPatch, retry_after: str
) -> None:
    job = await asubmit(local_service, 1)
    async with FaultProxy(local_service.base_url).running() as proxy:
        conn_id = point_connection(monkeypatch, proxy, local_service)
        proxy.add(status(429, Retry_After=retry_after))
        started = time.monotonic()
        trigger = JobStatusTrigger(
            job_id=job.id,
            jobservice_conn_id=conn_id,
            poll_policy={"interval": 0.3},
            retry_policy={"base": 0.5, "cap": 3.0},
            deadline=time.time() + 30,
        )
        event = await first_event(trigger)
        elapsed = time.monotonic() - started
    assert event["status"] == "success", event  # no false timeout
    assert elapsed < 1 + 3.0 + 2, elapsed  # the job's second, one backoff cap, some slack


def test_one_huge_retry_after_then_ok_on_a_worker_wait(
    local_service: Any, threaded_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _submit(local_service, {"seconds": 1})
    hook = JobServiceHook(point_connection(monkeypatch, threaded_proxy, local_service))
    threaded_proxy.add(status(429, Retry_After="999999"))
    started = time.monotonic()
    spec = WaitSpec(job_id=job.id, poll=PollPolicy(interval=0.3), retry=RetryPolicy(base=0.5, cap=3.0), deadline=time.time() + 30)
    result = hook.wait_for_job(spec, check_now=True)
    assert result.outcome is Outcome.SUCCESS and time.monotonic() - started < 1 + 3.0 + 2


def test_cancel_and_wait_returns_within_its_deadline_whatever_retry_after_says(
    local_service: Any, threaded_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _submit(local_service, {"seconds": 60})
    hook = JobServiceHook(point_connection(monkeypatch, threaded_proxy, local_service))
    threaded_proxy.fail_for(60, status(429, Retry_After="999999"), route="cancel")
    started = time.monotonic()
    with pytest.raises(TransientError, match="deadline"):
        hook.cancel_and_wait(job.id, deadline=time.time() + 5)
    assert time.monotonic() - started <= 5.5  # before: still waiting after 20 s
    threaded_proxy.windows.clear()
    hook.cancel_job(job.id)


async def test_trigger_on_kill_stays_within_its_budget(local_service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    job = await asubmit(local_service, 60)
    async with FaultProxy(local_service.base_url).running() as proxy:
        conn_id = point_connection(monkeypatch, proxy, local_service)
        proxy.fail_for(60, status(429, Retry_After="1"), route="cancel")
        trigger = JobStatusTrigger(job_id=job.id, jobservice_conn_id=conn_id, cancel_on_kill=True, deadline=time.time() + 4)
        started = time.monotonic()
        await trigger.on_kill()
        assert time.monotonic() - started <= 4.5
        assert proxy.requests["cancel"] >= 2  # it did retry, within the budget
        proxy.fail_for(60, status(429, Retry_After="999999"), route="cancel")
        started = time.monotonic()
        await JobStatusTrigger(job_id=job.id, jobservice_conn_id=conn_id, cancel_on_kill=True, deadline=time.time() + 4).on_kill()
        assert time.monotonic() - started <= 4.5
        proxy.windows.clear()
        await trigger.on_kill()  # the service answers again: the job is cancelled
    async with JobServiceClient(ServiceConfig(base_url=local_service.base_url, token=local_service.token)) as client:
        assert (await client.get_job(job.id)).raw_status == "CANCELLED"


# -- every call retried ----------------------------------------------------------------------------
@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferrable"])
def test_three_503s_on_the_result_after_success_still_give_the_result(
    local_service: Any, threaded_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, deferrable: bool
) -> None:
    conn_id = point_connection(monkeypatch, threaded_proxy, local_service)
    threaded_proxy.add(*[status(503)] * 3, route="result")
    op = SubmitAndWaitOperator(
        task_id="t",
        jobservice_conn_id=conn_id,
        job_type="sleep",
        job_params={"seconds": 0.5, "result": {"rows": 17}},
        poll_interval=0.2,
        deferrable=deferrable,
    )
    context = make_context()
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)
        event = asyncio.run(first_event(deferred.value.trigger))
        result = op.execute_complete(context, event)
    else:
        result = op.execute(context)
    assert result == {"rows": 17}
    assert threaded_proxy.faulted["result"] == 3 and threaded_proxy.requests["result"] == 4


def test_every_worker_read_and_cancel_rides_out_two_503s(
    local_service: Any, threaded_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = JobServiceHook(point_connection(monkeypatch, threaded_proxy, local_service))
    done = _submit(local_service, {"seconds": 0, "steps": 2, "result": "ok"})
    running = _submit(local_service, {"seconds": 60})
    while hook.get_job(done.id).raw_status != "SUCCEEDED":
        time.sleep(0.05)
    calls = {
        "status": lambda: hook.get_job(done.id).id == done.id,
        "result": lambda: hook.get_result(done.id) == "ok",
        "logs": lambda: hook.get_logs(done.id).complete,
        "list": lambda: len(list(hook.list_jobs(ListQuery(limit=3)))) == 3,
        "cancel": lambda: hook.cancel_job(running.id).raw_status in ("CANCELLING", "CANCELLED"),
    }
    for route, call in calls.items():
        threaded_proxy.add(status(503), status(502, "<html>bad gateway</html>", Content_Type="text/html"), route=route)
        assert call(), route
        assert threaded_proxy.faulted[route] == 2, (route, threaded_proxy.faulted)
    threaded_proxy.add(status(503), status(503))  # the batch lookup is a status request too
    assert [j.id for j in hook.get_jobs([done.id, running.id])] == [done.id, running.id]


# -- no hang, no false success -------------------------------------------------------------------------
async def test_a_dialect_bug_in_the_batch_lookup_fails_only_its_wait_with_an_error_event(
    local_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = await asubmit(local_service, 30)
    healthy = await asubmit(local_service, 1)
    original = NativeDialect.parse_many

    def parse_many(self: NativeDialect, response: Any, job_ids: Any = ()) -> Any:
        if poison.id in job_ids:
            raise KeyError("status")  # a bug in a dialect, not an answer of the service
        return original(self, response, job_ids)

    monkeypatch.setattr(NativeDialect, "parse_many", parse_many)
    monkeypatch.setenv("AIRFLOW_CONN_BUGGY", conn_json(local_service.base_url, local_service.token))
    started = time.monotonic()

    async def timed(job_id: str) -> tuple[dict[str, Any], float]:
        trigger = JobStatusTrigger(job_id=job_id, jobservice_conn_id="buggy", poll_policy={"interval": 0.3})
        return await first_event(trigger), time.monotonic() - started

    (bad, bad_at), (good, _) = await asyncio.wait_for(asyncio.gather(timed(poison.id), timed(healthy.id)), 20)
    assert bad["status"] == "error" and "KeyError" in bad["message"] and bad_at < 2.0, (bad, bad_at)
    assert good["status"] == "success", good


def other_record(service: Any) -> tuple[str, dict[str, Any]]:
    """A SUCCEEDED job's record, served in place of the record of the job asked for."""
    other = _submit(service, {"seconds": 0})
    config = ServiceConfig(base_url=service.base_url, token=service.token)

    async def record() -> dict[str, Any]:
        async with JobServiceClient(config) as client:
            while (job := await client.get_job(other.id)).raw_status != "SUCCEEDED":
                await asyncio.sleep(0.05)
            return job.summary()

    return other.id, asyncio.run(record())


def test_another_jobs_record_fails_the_sensor_poke_and_the_worker_wait(
    local_service: Any, threaded_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _submit(local_service, {"seconds": 30})
    other_id, record = other_record(local_service)
    conn_id = point_connection(monkeypatch, threaded_proxy, local_service)
    wrong = status(200, json.dumps(record), Content_Type="application/json")
    threaded_proxy.add(wrong)
    sensor = JobCompleteSensor(task_id="s", job_id=asked.id, jobservice_conn_id=conn_id, poll_interval=0.2)
    with pytest.raises(MalformedResponseError) as info:
        sensor.poke(make_context())
    assert asked.id in str(info.value) and other_id in str(info.value)
    threaded_proxy.add(wrong)
    result = JobServiceHook(conn_id).wait_for_job(WaitSpec(job_id=asked.id, poll=PollPolicy(interval=0.2)), check_now=True)
    assert result.outcome is Outcome.ERROR and asked.id in result.message and other_id in result.message
    JobServiceHook(conn_id).cancel_job(asked.id)


async def test_another_jobs_record_fails_the_trigger(local_service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = await asubmit(local_service, 30)
    other_id, record = await asyncio.to_thread(other_record, local_service)
    async with FaultProxy(local_service.base_url).running() as proxy:
        conn_id = point_connection(monkeypatch, proxy, local_service)
        proxy.add(status(200, json.dumps({"jobs": [record], "missing": []}), Content_Type="application/json"))
        event = await first_event(JobStatusTrigger(job_id=asked.id, jobservice_conn_id=conn_id, poll_policy={"interval": 0.2}))
    assert event["status"] == "error" and asked.id in event["message"] and other_id in event["message"], event


async def test_an_outage_under_many_waits_is_a_few_lines_per_service(
    local_service: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = [await asubmit(local_service, 4) for _ in range(50)]
    async with FaultProxy(local_service.base_url).running() as proxy:
        conn_id = point_connection(monkeypatch, proxy, local_service)
        proxy.fail_for(3, status(503, "maintenance"))
        with counting_warnings(caplog) as warnings:
            events = await asyncio.gather(
                *(
                    first_event(
                        JobStatusTrigger(
                            job_id=j.id, jobservice_conn_id=conn_id, poll_policy={"interval": 0.3}, retry_policy={"base": 0.2}
                        )
                    )
                    for j in jobs
                )
            )
    assert [e["status"] for e in events] == ["success"] * 50
    assert proxy.faulted["status"] >= 3
    # Before: one warning per wait per failed batch (798 lines for 16 failed batches at 200 waits).
    assert 1 <= len(warnings) <= 2, warnings
    assert sum("working again" in r.getMessage() for r in caplog.records) >= 1
