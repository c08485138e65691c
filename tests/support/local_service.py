"""The embedded local job service as a test fixture helper."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from tests.support.shaping_proxy import ShapingProxy, network_is_shaped

from jobservice_local.testing import LocalServiceError, LocalServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["REPO_ROOT", "TERMINAL", "Api", "LocalService", "LocalServiceError", "api_for", "assert_problem", "pid_alive"]

PROBLEM_JSON = "application/problem+json"
PROBLEM_PREFIX = "urn:jobservice:problem:"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def serve_command(*args: str | Path) -> list[str]:
    """``jobservice-local serve ARGS`` as this test environment runs it."""
    return [sys.executable, "-m", "jobservice_local", "serve", *map(str, args)]


class LocalService(LocalServiceProcess):
    """A local service whose ``python`` jobs can import test code (``tests.support.pyjobs:…``).

    In the shaped network mode (``JOBSERVICE_TEST_NETWORK=shaped``) it is reached through its own
    :class:`ShapingProxy`: ``base_url`` (and so ``url()``) is the proxy's, ``direct_url`` the
    service's. The proxy stops and starts with the service, on the same port, so a client of a
    stopped service meets a refused connection as it would without the proxy, and a restart keeps
    every URL handed out valid.
    """

    def __init__(self, workdir: Path, token: str | None = "test-token", extra_args: Sequence[str] = ()) -> None:
        super().__init__(workdir, token=token, extra_args=extra_args, pythonpath=[REPO_ROOT])
        self.shaper: ShapingProxy | None = None
        self._shaped = network_is_shaped()

    @property
    def direct_url(self) -> str:
        """The service's own ``http://127.0.0.1:<port>``, bypassing any shaping proxy."""
        return super().base_url

    @property
    def base_url(self) -> str:
        return self.shaper.url if self.shaper is not None else self.direct_url

    def start(self) -> LocalService:
        super().start()
        if not self._shaped:
            return self
        assert self.port is not None
        try:
            if self.shaper is None:
                self.shaper = ShapingProxy("127.0.0.1", self.port)
            else:
                self.shaper.retarget("127.0.0.1", self.port)
            self.shaper.start()
        except BaseException:
            super().stop()
            raise
        return self

    def stop(self) -> int | None:
        if self.shaper is not None:
            self.shaper.stop()
        return super().stop()

    def __enter__(self) -> LocalService:
        return self.start()


class Api:
    """A thin test client for API v1 (no retries: every response is asserted on)."""

    def __init__(self, session: aiohttp.ClientSession, service: LocalService) -> None:
        self.session = session
        self.service = service

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        all_headers = dict(self.service.headers) if auth else {}
        if data is not None:
            all_headers["Content-Type"] = "application/json"  # raw JSON text; a test may say otherwise
        all_headers.update(headers or {})
        async with self.session.request(
            method, self.service.url(path), json=json, data=data, params=params, headers=all_headers
        ) as response:
            body = await response.json(content_type=None)
            return response.status, body, response.headers

    async def submit(
        self, job_type: str, params: dict[str, Any] | None = None, *, key: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {"type": job_type, "params": params or {}, **fields}
        headers = {"Idempotency-Key": key} if key else None
        status, job, _ = await self.call("POST", "/v1/jobs", json=body, headers=headers)
        assert status == 201, job
        return job  # type: ignore[no-any-return]

    async def get(self, job_id: str, **params: Any) -> dict[str, Any]:
        status, job, _ = await self.call("GET", f"/v1/jobs/{job_id}", params=params or None)
        assert status == 200, job
        return job  # type: ignore[no-any-return]

    async def cancel(self, job_id: str) -> dict[str, Any]:
        status, job, _ = await self.call("POST", f"/v1/jobs/{job_id}/cancel")
        assert status == 200, job
        return job  # type: ignore[no-any-return]

    async def batch(self, job_ids: list[str]) -> dict[str, Any]:
        status, body, _ = await self.call("GET", "/v1/jobs", params=[("id", job_id) for job_id in job_ids])
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def watch(self, seen: dict[str, int], wait_s: float = 0) -> dict[str, Any]:
        status, body, _ = await self.call("POST", "/v1/watch", json={"seen": seen, "wait_s": wait_s})
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def logs(self, job_id: str, **params: Any) -> dict[str, Any]:
        status, body, _ = await self.call("GET", f"/v1/jobs/{job_id}/logs", params=params or None)
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def wait_for(
        self, job_id: str, done: Callable[[dict[str, Any]], bool] | set[str], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Long-poll the job until ``done`` (a predicate or a set of statuses) holds."""
        check = done if callable(done) else (lambda job: job["status"] in done)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        job = await self.get(job_id)
        while not check(job):
            remaining = deadline - loop.time()
            assert remaining > 0, f"job {job_id} did not get there within {timeout}s; last record: {job}"
            job = await self.get(job_id, wait_s=f"{min(remaining, 10):.3f}", seen=job["version"])
        return job

    async def wait_for_log(self, job_id: str, timeout: float = 20.0) -> str:
        """The job's log once it is not empty (bounded polling: logs have no long-poll)."""
        deadline = time.monotonic() + timeout
        while True:
            data = (await self.logs(job_id))["data"]
            if data.strip():
                return str(data)
            assert time.monotonic() < deadline, f"job {job_id} wrote nothing to its log within {timeout}s"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def api_for(service: LocalService, connections: int = 100) -> AsyncIterator[Api]:
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=90)) as session:
        yield Api(session, service)


def assert_problem(status: int, body: Any, headers: Any, expected_status: int, slug: str) -> None:
    assert status == expected_status, body
    assert headers["Content-Type"].startswith(PROBLEM_JSON), headers["Content-Type"]
    assert body["type"] == PROBLEM_PREFIX + slug, body
    assert body["status"] == expected_status
    assert body["title"] and body["detail"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
