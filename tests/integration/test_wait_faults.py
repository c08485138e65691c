"""The wait loop rides out transient faults injected between the client and the real local service."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import conn_json
from tests.support.fault_proxy import RESET, Fault, FaultProxy, status
from tests.support.local_service import LocalService

from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import SubmitRequest
from jobservice_provider.core.errors import TransientError
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.wait import Outcome, WaitSpec, wait_for_job
from jobservice_provider.triggers.jobservice import JobStatusTrigger

pytestmark = pytest.mark.integration
FAST_POLL = PollPolicy(interval=0.2)
FAST_RETRY = RetryPolicy(budget=30, base=0.05, cap=0.2)


def config_for(url: str, token: str | None) -> ServiceConfig:
    return ServiceConfig.from_connection_fields(conn_id="faulty", host=url, password=token)


async def submit_sleep(service: Any, seconds: float) -> str:
    async with JobServiceClient(config_for(service.base_url, service.token)) as client:
        return (await client.submit(SubmitRequest("sleep", {"seconds": seconds}))).id


async def wait_through(proxy_faults: list[Fault], service: Any, caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    """Wait for a short job through the proxy; return the warnings and the recovery lines logged."""
    job_id = await submit_sleep(service, 1.0)
    async with FaultProxy(service.base_url).running() as proxy:
        proxy.add(*proxy_faults)
        async with JobServiceClient(config_for(proxy.url, service.token)) as client:
            with caplog.at_level(logging.INFO):
                result = await wait_for_job(client, WaitSpec(job_id=job_id, poll=FAST_POLL, retry=FAST_RETRY), check_now=True)
    assert result.outcome is Outcome.SUCCESS, result.message
    assert proxy.faulted["status"] == len(proxy_faults)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    recoveries = [r.getMessage() for r in caplog.records if "working again" in r.getMessage()]
    return warnings, recoveries


async def test_503_five_times_then_ok_succeeds_with_one_warning_and_one_recovery_line(
    local_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    warnings, recoveries = await wait_through([status(503)] * 5, local_service, caplog)
    assert len(warnings) == 1 and "HTTP 503" in warnings[0] and "retrying in" in warnings[0], warnings
    assert len(recoveries) == 1 and "5 failure(s)" in recoveries[0], recoveries


async def test_html_error_pages_and_resets_mid_body_are_retried(local_service: Any, caplog: pytest.LogCaptureFixture) -> None:
    html = status(502, "<html><body>Bad gateway</body></html>", Content_Type="text/html")
    warnings, recoveries = await wait_through([html, RESET], local_service, caplog)
    assert len(warnings) == 1 and "HTTP 502" in warnings[0] and "Bad gateway" in warnings[0], warnings
    assert len(recoveries) == 1 and "2 failure(s)" in recoveries[0], recoveries


async def test_a_reset_mid_body_is_a_transient_error_saying_so(local_service: Any) -> None:
    job_id = await submit_sleep(local_service, 1.0)
    async with FaultProxy(local_service.base_url).running() as proxy:
        proxy.add(RESET)
        async with JobServiceClient(config_for(proxy.url, local_service.token)) as client:
            with pytest.raises(TransientError) as info:
                await client.get_job(job_id)
    assert "GET " in str(info.value) and job_id in str(info.value)


async def test_retry_after_holds_back_the_next_request(local_service: Any) -> None:
    job_id = await submit_sleep(local_service, 0.5)
    await asyncio.sleep(0.7)
    slept: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)  # fake clock: we check the delay asked for, without waiting it

    async with FaultProxy(local_service.base_url).running() as proxy:
        proxy.add(status(429, Retry_After="3"))
        async with JobServiceClient(config_for(proxy.url, local_service.token)) as client:
            result = await wait_for_job(client, WaitSpec(job_id=job_id, poll=FAST_POLL), check_now=True, sleep=recording_sleep)
    assert result.outcome is Outcome.SUCCESS
    assert len(proxy.status_requests) == 2 and len(slept) == 1 and slept[0] >= 3.0


async def test_budget_of_continuous_failure_ends_the_wait_with_the_last_error(local_service: Any) -> None:
    job_id = await submit_sleep(local_service, 60)
    async with FaultProxy(local_service.base_url).running() as proxy:
        proxy.add(*[status(500, "database on fire")] * 1000)
        async with JobServiceClient(config_for(proxy.url, local_service.token)) as client:
            started = time.monotonic()
            result = await wait_for_job(
                client, WaitSpec(job_id=job_id, poll=FAST_POLL, retry=RetryPolicy(budget=1.0, base=0.1, cap=0.2)), check_now=True
            )
    assert result.outcome is Outcome.ERROR
    assert "HTTP 500" in result.message and "database on fire" in result.message and "budget 1s" in result.message
    assert 1.0 <= time.monotonic() - started < 5


async def test_malformed_record_fails_quoting_the_body(local_service: Any) -> None:
    job_id = await submit_sleep(local_service, 60)
    async with FaultProxy(local_service.base_url).running() as proxy:
        proxy.add(status(200, '{"identifier": "' + "x" * 300 + '"}', Content_Type="application/json"))
        async with JobServiceClient(config_for(proxy.url, local_service.token)) as client:
            result = await wait_for_job(client, WaitSpec(job_id=job_id, poll=FAST_POLL), check_now=True)
    assert result.outcome is Outcome.ERROR
    assert "missing field 'id'" in result.message and '{"identifier": "xxxx' in result.message
    assert "x" * 250 not in result.message  # only the first 200 bytes are quoted


async def test_wrong_token_fails_on_the_first_poll_naming_the_connection(
    local_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await submit_sleep(local_service, 60)
    async with FaultProxy(local_service.base_url).running() as proxy:
        monkeypatch.setenv("AIRFLOW_CONN_FAULTY", conn_json(proxy.url, "not-the-token"))
        trigger = JobStatusTrigger(job_id=job_id, jobservice_conn_id="faulty", poll_policy={"interval": 0.2})
        event = (await anext(trigger.run())).payload
    assert event["status"] == "error" and len(proxy.status_requests) == 1
    assert "Connection 'faulty'" in event["message"] and "401" in event["message"] and "API token" in event["message"]


async def test_service_down_for_20s_mid_wait_then_back(tmp_path: Path) -> None:
    with LocalService(tmp_path) as service:
        job_id = await submit_sleep(service, 0.5)
        await asyncio.sleep(1.0)  # the job has finished; the service now goes away
        service.stop()
        config = config_for(service.base_url, service.token)
        async with JobServiceClient(config) as client:
            wait = asyncio.create_task(
                wait_for_job(
                    client,
                    WaitSpec(job_id=job_id, poll=FAST_POLL, retry=RetryPolicy(budget=120, base=0.5, cap=4)),
                    check_now=True,
                )
            )
            await asyncio.sleep(20)
            assert not wait.done()
            service.start()
            result = await asyncio.wait_for(wait, timeout=30)
    assert result.outcome is Outcome.SUCCESS and result.job is not None and result.job.raw_status == "SUCCEEDED"
