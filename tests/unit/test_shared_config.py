"""The triggerer reads a connection once for the many triggers that start together."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.conftest import conn_json

from jobservice_provider.hooks.jobservice import JobServiceHook, ashared_config


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts trips to Airflow's connection store (the real lookup still happens)."""
    seen: list[str] = []
    original = JobServiceHook.aget_connection

    async def counted(conn_id: str) -> Any:
        seen.append(conn_id)
        await asyncio.sleep(0.01)  # a round trip to the supervisor, as in the triggerer
        return await original(conn_id)

    monkeypatch.setattr(JobServiceHook, "aget_connection", staticmethod(counted))
    return seen


async def test_triggers_starting_together_share_one_read(monkeypatch: pytest.MonkeyPatch, reads: list[str]) -> None:
    monkeypatch.setenv("AIRFLOW__JOBSERVICE__CONNECTION_CACHE_TTL", "0.5")  # the provider setting (default 30)
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_A", conn_json("http://127.0.0.1:9", "token-one"))
    configs = await asyncio.gather(*(ashared_config("shared_a") for _ in range(50)))
    assert reads == ["shared_a"] and all(config is configs[0] for config in configs)
    assert configs[0].token == "token-one"
    # An edited connection reaches the waits that start once the entry is older than its time to live.
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_A", conn_json("http://127.0.0.1:9", "token-two"))
    assert (await ashared_config("shared_a")).token == "token-one"
    await asyncio.sleep(0.6)
    assert (await ashared_config("shared_a")).token == "token-two"
    assert reads == ["shared_a", "shared_a"]


async def test_a_failed_read_is_not_remembered(monkeypatch: pytest.MonkeyPatch, reads: list[str]) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_B", conn_json("http://127.0.0.1:9", "token-bee", verify_tls="maybe"))
    for _ in range(2):
        with pytest.raises(Exception, match="shared_b"):
            await ashared_config("shared_b")
    assert reads == ["shared_b", "shared_b"]
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_B", conn_json("http://127.0.0.1:9", "token-bee"))
    assert (await ashared_config("shared_b")).token == "token-bee"
