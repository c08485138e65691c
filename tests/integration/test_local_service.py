"""The embedded local job service, exercised over real HTTP against a real subprocess."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.local_service import TERMINAL, Api, LocalService, api_for, assert_problem, pid_alive

pytestmark = pytest.mark.integration

SLEEP_60 = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"]
IGNORE_TERM_SLEEP_60 = [
    sys.executable,
    "-c",
    "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(os.getpid(), flush=True); time.sleep(60)",
]


def new_key() -> str:
    return f"test-{uuid.uuid4().hex}"


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """A service with every job type enabled and a 1 s cancel grace."""
    workdir = tmp_path_factory.mktemp("local-service")
    extra = ["--allow-python", "--allow-command", "--cancel-grace", "1"]
    with LocalService(workdir, extra_args=extra) as service:
        yield service


@pytest.fixture(scope="module")
def plain_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """A service with the default flags (python and command disabled)."""
    with LocalService(tmp_path_factory.mktemp("plain-service")) as service:
        yield service


@pytest.fixture
async def api(svc: LocalService) -> AsyncIterator[Api]:
    async with api_for(svc) as client:
        yield client


# ---------------------------------------------------------------------- scale


async def test_thousand_concurrent_sleep_jobs_all_succeed(api: Api) -> None:
    count = 1000
    started = time.monotonic()
    jobs = await asyncio.gather(*(api.submit("sleep", {"seconds": 1}) for _ in range(count)))
    submitted = time.monotonic() - started
    ids = [job["id"] for job in jobs]
    assert len(set(ids)) == count

    deadline = started + 45
    pending = list(ids)
    final: dict[str, dict[str, Any]] = {}
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} of {count} jobs still not terminal after 45s"
        chunks = [pending[i : i + 100] for i in range(0, len(pending), 100)]
        answers = await asyncio.gather(*(api.batch(chunk) for chunk in chunks))
        for answer in answers:
            assert answer["missing"] == []
            for job in answer["jobs"]:
                if job["status"] in TERMINAL:
                    final[job["id"]] = job
        pending = [job_id for job_id in pending if job_id not in final]
        if pending:
            await asyncio.sleep(0.25)
    elapsed = time.monotonic() - started

    statuses = {job["status"] for job in final.values()}
    assert statuses == {"SUCCEEDED"}, f"unexpected statuses {statuses}"
    sample = final[ids[0]]
    assert sample["progress"] == {"completed": 1, "total": 1, "message": "step 1/1"}
    assert sample["error"] is None
    assert elapsed < 20, f"1000 concurrent 1 s sleep jobs took {elapsed:.2f}s (submission {submitted:.2f}s)"


# ---------------------------------------------------------------------- restart


async def test_restart_loses_no_job(tmp_path: Path) -> None:
    service = LocalService(tmp_path, extra_args=["--max-concurrency", "1"])
    with service:
        async with api_for(service) as api:
            done_key = new_key()
            done = await api.submit("sleep", {"seconds": 0, "result": {"answer": 42}}, key=done_key)
            done = await api.wait_for(done["id"], {"SUCCEEDED"})
            running = await api.submit("sleep", {"seconds": 60})
            running = await api.wait_for(running["id"], {"RUNNING"})
            queued = [await api.submit("sleep", {"seconds": 0, "result": i}) for i in range(20)]
            assert all(job["status"] == "QUEUED" for job in queued)
            cancelled_queued = await api.submit("sleep", {"seconds": 0})
            cancelled = await api.cancel(cancelled_queued["id"])
            assert cancelled["status"] == "CANCELLED"
            assert cancelled["error"] == {"type": "Cancelled", "message": "cancelled by request"}
            port = service.port

        assert service.restart().port == port

        async with api_for(service) as api:
            every_id = [done["id"], running["id"], cancelled_queued["id"], *(job["id"] for job in queued)]
            answer = await api.batch(every_id)
            assert answer["missing"] == []
            assert [job["id"] for job in answer["jobs"]] == every_id

            after = {job["id"]: job for job in answer["jobs"]}
            assert after[done["id"]] == done, "a finished job must not change across a restart"
            interrupted = after[running["id"]]
            assert interrupted["status"] == "FAILED"
            assert interrupted["error"]["type"] == "ServiceRestarted"
            assert interrupted["finished_at"] is not None
            assert after[cancelled_queued["id"]]["status"] == "CANCELLED"

            finished = [await api.wait_for(job["id"], TERMINAL) for job in queued]
            assert [job["status"] for job in finished] == ["SUCCEEDED"] * len(queued)
            started_at = [job["started_at"] for job in finished]
            assert started_at == sorted(started_at), "queued jobs must start in submission order"
            status, result, _ = await api.call("GET", f"/v1/jobs/{queued[5]['id']}/result")
            assert (status, result) == (200, {"job_id": queued[5]["id"], "result": 5})

            status, again, _ = await api.call(
                "POST",
                "/v1/jobs",
                json={"type": "sleep", "params": {"seconds": 0, "result": {"answer": 42}}},
                headers={"Idempotency-Key": done_key},
            )
            assert (status, again["id"]) == (200, done["id"]), "idempotency keys survive a restart"
    assert service.process is not None and service.process.returncode == 0


async def test_restart_stops_processes_and_settles_their_jobs(tmp_path: Path) -> None:
    service = LocalService(tmp_path, extra_args=["--allow-command", "--cancel-grace", "1"])
    with service:
        async with api_for(service) as api:
            running = await api.submit("command", {"argv": SLEEP_60})
            stubborn = await api.submit("command", {"argv": IGNORE_TERM_SLEEP_60})
            pids = [int(await api.wait_for_log(job["id"])) for job in (running, stubborn)]
            assert (await api.cancel(stubborn["id"]))["status"] == "CANCELLING"

        stopped_at = time.monotonic()
        assert service.stop() == 0
        assert time.monotonic() - stopped_at < 8, "shutdown must not wait much longer than the cancel grace"
        assert not any(pid_alive(pid) for pid in pids), "the service must not leave job processes behind"
        service.start()

        async with api_for(service) as api:
            answer = await api.batch([running["id"], stubborn["id"]])
            interrupted, cancelled = answer["jobs"]
            assert interrupted["status"] == "FAILED"
            assert interrupted["error"]["type"] == "ServiceRestarted"
            assert "restarted" in (await api.logs(running["id"]))["data"]
            assert cancelled["status"] == "CANCELLED"
            assert cancelled["error"] == {"type": "Cancelled", "message": "cancelled by request"}


# ---------------------------------------------------------------------- submit


async def test_idempotent_resubmit_returns_the_same_job(api: Api) -> None:
    key = new_key()
    body = {"type": "sleep", "params": {"seconds": 0.2, "steps": 2}, "meta": {"dag_id": "d"}, "timeout_s": 30}
    status, first, headers = await api.call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert status == 201, first
    assert headers["Location"] == f"/v1/jobs/{first['id']}"
    assert first["key"] == key and first["meta"] == {"dag_id": "d"} and first["timeout_s"] == 30
    assert first["id"].startswith("j_") and len(first["id"]) == 34

    status, second, _ = await api.call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert status == 200, second
    assert second["id"] == first["id"]

    await api.wait_for(first["id"], {"SUCCEEDED"})
    status, third, _ = await api.call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert (status, third["id"], third["status"]) == (200, first["id"], "SUCCEEDED")

    other = {**body, "params": {"seconds": 0.3}}
    status, problem, headers = await api.call("POST", "/v1/jobs", json=other, headers={"Idempotency-Key": key})
    assert_problem(status, problem, headers, 409, "idempotency-key-reused")
    assert problem["job_id"] == first["id"]


async def test_job_record_shape_and_versions(api: Api) -> None:
    job = await api.submit("sleep", {"seconds": 0.1, "steps": 3, "result": ["x"]}, meta={"a": 1})
    assert list(job) == [
        "id", "key", "type", "params", "status", "version", "progress", "attempt", "created_at",
        "started_at", "updated_at", "finished_at", "error", "meta", "timeout_s", "links",
    ]  # fmt: skip
    assert job["version"] >= 1 and job["attempt"] == 1 and job["key"] is None
    assert job["links"] == {"web": f"/ui/jobs/{job['id']}"}
    assert job["created_at"].endswith("Z") and len(job["created_at"]) == len("2026-11-28T11:00:00.123456Z")
    done = await api.wait_for(job["id"], {"SUCCEEDED"})
    # created, started, three steps, finished: every change bumps the version.
    assert done["version"] == 6
    assert done["progress"] == {"completed": 3, "total": 3, "message": "step 3/3"}
    assert done["started_at"] is not None and done["finished_at"] is not None
    assert done["created_at"] <= done["started_at"] <= done["finished_at"] == done["updated_at"]
    status, result, _ = await api.call("GET", f"/v1/jobs/{job['id']}/result")
    assert (status, result) == (200, {"job_id": job["id"], "result": ["x"]})
    log = await api.logs(job["id"])
    assert log["data"] == "step 1/3\nstep 2/3\nstep 3/3\n" and log["complete"] is True

    failing = await api.submit("sleep", {"seconds": 0, "fail": "boom"})
    failed = await api.wait_for(failing["id"], TERMINAL)
    assert failed["status"] == "FAILED"
    assert failed["error"] == {"type": "SleepJobFailed", "message": "boom"}
    status, problem, headers = await api.call("GET", f"/v1/jobs/{failing['id']}/result")
    assert_problem(status, problem, headers, 409, "job-not-succeeded")
    assert problem["job_status"] == "FAILED"


async def test_invalid_requests_are_problems(api: Api) -> None:
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"data": b"{not json"}, 400, "invalid-request", "JSON"),
        ({"json": ["sleep"]}, 400, "invalid-request", "object"),
        ({"json": {"type": "sleep", "priority": 1}}, 400, "invalid-request", "priority"),
        ({"json": {"params": {}}}, 400, "invalid-request", "type"),
        ({"json": {"type": "sleep", "params": [1]}}, 400, "invalid-request", "params"),
        ({"json": {"type": "sleep", "meta": "x"}}, 400, "invalid-request", "meta"),
        ({"json": {"type": "sleep", "timeout_s": -1}}, 400, "invalid-request", "timeout_s"),
        ({"json": {"type": "sleep", "timeout_s": True}}, 400, "invalid-request", "timeout_s"),
        ({"json": {"type": "teleport"}}, 422, "unknown-job-type", "teleport"),
        ({"json": {"type": "sleep", "params": {"secs": 1}}}, 422, "invalid-params", "secs"),
        ({"json": {"type": "sleep", "params": {"steps": 0}}}, 422, "invalid-params", "steps"),
        ({"json": {"type": "sleep", "params": {"seconds": -1}}}, 422, "invalid-params", "seconds"),
        ({"json": {"type": "python", "params": {"callable": "no colon"}}}, 422, "invalid-params", "callable"),
        ({"json": {"type": "sleep"}, "headers": {"Idempotency-Key": "k" * 256}}, 400, "invalid-request", "Idempotency-Key"),
        ({"data": b'{"type": "sleep", "meta": {"blob": "' + b"x" * 8 * 2**20 + b'"}}'}, 413, "payload-too-large", "8 MiB"),
    ]  # fmt: skip
    for kwargs, expected_status, slug, mentioned in cases:
        status, problem, headers = await api.call("POST", "/v1/jobs", **kwargs)
        assert_problem(status, problem, headers, expected_status, slug)
        assert mentioned in problem["detail"], problem
    status, problem, _ = await api.call("POST", "/v1/jobs", json={"type": "teleport"})
    assert problem["known_types"] == ["command", "python", "sleep"]


async def test_shell_string_argv_is_rejected(api: Api) -> None:
    status, problem, headers = await api.call(
        "POST", "/v1/jobs", json={"type": "command", "params": {"argv": "echo hello; rm -rf /"}}
    )
    assert_problem(status, problem, headers, 422, "invalid-params")
    assert problem["detail"] == "argv must be a list; shell strings are not accepted"


async def test_disabled_job_types_are_forbidden(plain_svc: LocalService) -> None:
    async with api_for(plain_svc) as api:
        for job_type, params, flag in [
            ("python", {"callable": "tests.support.pyjobs:count_to", "args": [1]}, "--allow-python"),
            ("command", {"argv": ["true"]}, "--allow-command"),
        ]:
            status, problem, headers = await api.call("POST", "/v1/jobs", json={"type": job_type, "params": params})
            assert_problem(status, problem, headers, 403, "job-type-disabled")
            assert flag in problem["detail"]


# ---------------------------------------------------------------------- errors and auth


async def test_unknown_job_and_routes_are_problem_json(api: Api) -> None:
    missing = "j_" + "0" * 32
    for method, path in [
        ("GET", f"/v1/jobs/{missing}"),
        ("POST", f"/v1/jobs/{missing}/cancel"),
        ("GET", f"/v1/jobs/{missing}/result"),
        ("GET", f"/v1/jobs/{missing}/logs"),
    ]:
        status, problem, headers = await api.call(method, path)
        assert_problem(status, problem, headers, 404, "job-not-found")
        assert problem["job_id"] == missing

    weird = "x'; DROP TABLE jobs; --"
    status, problem, headers = await api.call("GET", f"/v1/jobs/{weird}")
    assert_problem(status, problem, headers, 404, "job-not-found")
    assert problem["job_id"] == weird

    status, problem, headers = await api.call("GET", "/v1/nothing-here")
    assert_problem(status, problem, headers, 404, "not-found")
    status, problem, headers = await api.call("DELETE", "/v1/jobs")
    assert_problem(status, problem, headers, 405, "method-not-allowed")
    assert "GET" in headers["Allow"] and "POST" in headers["Allow"]


async def test_missing_or_wrong_token_is_401(api: Api) -> None:
    for path in ["/v1/health", "/v1/jobs", "/v1/nothing-here"]:
        status, problem, headers = await api.call("GET", path, auth=False)
        assert_problem(status, problem, headers, 401, "unauthorized")
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert "missing" in problem["detail"]

    status, problem, headers = await api.call("GET", "/v1/health", auth=False, headers={"Authorization": "Bearer not-the-token"})
    assert_problem(status, problem, headers, 401, "unauthorized")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "wrong" in problem["detail"]

    status, problem, headers = await api.call("GET", "/v1/health", auth=False, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(status, problem, headers, 401, "unauthorized")

    status, health, _ = await api.call("GET", "/v1/health")
    assert status == 200
    assert health["status"] == "ok" and health["service"] == "jobservice-local" and health["api"] == "v1"
    assert set(health["jobs"]) == {"QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED"}


async def test_no_auth_mode_and_cli_refusals(tmp_path: Path) -> None:
    with LocalService(tmp_path / "open", token=None) as service:
        async with api_for(service) as api:
            status, health, _ = await api.call("GET", "/v1/health", auth=False)
            assert status == 200 and health["status"] == "ok"

    base = [sys.executable, "-m", "jobservice_local", "serve", "--port", "0", "--db", str(tmp_path / "x.db")]
    refused = subprocess.run([*base, "--host", "0.0.0.0", "--no-auth"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "non-loopback" in refused.stderr and refused.stdout == ""
    both = subprocess.run([*base, "--token", "t", "--no-auth"], capture_output=True, text=True, timeout=30)
    assert both.returncode == 2 and "not allowed with" in both.stderr


# ---------------------------------------------------------------------- python jobs


async def test_python_job_reports_progress_and_returns_a_result(api: Api, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job = await api.submit("python", {"callable": "tests.support.pyjobs:wait_for_file", "args": [str(go)]})
    waiting = await api.wait_for(job["id"], lambda j: j["status"] in TERMINAL or j["progress"]["completed"] == 1, timeout=30)
    assert waiting["status"] == "RUNNING", waiting
    assert waiting["progress"] == {"completed": 1, "total": 2, "message": "waiting for the go signal"}
    go.touch()
    done = await api.wait_for(job["id"], TERMINAL, timeout=30)
    assert done["status"] == "SUCCEEDED", done
    assert done["progress"] == {"completed": 2, "total": 2, "message": "done"}
    status, result, _ = await api.call("GET", f"/v1/jobs/{job['id']}/result")
    assert (status, result) == (200, {"job_id": job["id"], "result": {"saw": str(go)}})

    counting = await api.submit("python", {"callable": "tests.support.pyjobs:count_to", "args": [3], "kwargs": {"label": "n"}})
    counted = await api.wait_for(counting["id"], TERMINAL, timeout=30)
    assert counted["status"] == "SUCCEEDED", counted
    assert counted["progress"] == {"completed": 3, "total": 3, "message": "n 3"}
    assert (await api.logs(counting["id"]))["data"] == "n 1/3\nn 2/3\nn 3/3\n"

    coroutine = await api.submit("python", {"callable": "tests.support.pyjobs:async_double", "args": [21]})
    assert (await api.wait_for(coroutine["id"], TERMINAL, timeout=30))["status"] == "SUCCEEDED"
    status, result, _ = await api.call("GET", f"/v1/jobs/{coroutine['id']}/result")
    assert result["result"] == 42


async def test_python_job_exception_fails_the_job_with_traceback_in_log(api: Api) -> None:
    job = await api.submit("python", {"callable": "tests.support.pyjobs:fail", "args": ["it broke"]})
    failed = await api.wait_for(job["id"], TERMINAL, timeout=30)
    assert failed["status"] == "FAILED"
    assert failed["error"] == {"type": "ValueError", "message": "it broke"}
    log = await api.logs(job["id"])
    assert "about to fail" in log["data"]
    assert "Traceback (most recent call last)" in log["data"] and "ValueError: it broke" in log["data"]
    assert log["complete"] is True

    missing = await api.submit("python", {"callable": "tests.support.no_such_module:f"})
    failed = await api.wait_for(missing["id"], TERMINAL, timeout=30)
    assert failed["status"] == "FAILED" and failed["error"]["type"] == "ModuleNotFoundError"


async def test_cancel_running_python_job(api: Api, tmp_path: Path) -> None:
    never = tmp_path / "never-created"
    job = await api.submit("python", {"callable": "tests.support.pyjobs:wait_for_file", "args": [str(never)]})
    await api.wait_for(job["id"], lambda j: j["progress"]["completed"] == 1 or j["status"] in TERMINAL, timeout=30)
    await api.cancel(job["id"])
    cancelled = await api.wait_for(job["id"], TERMINAL, timeout=10)
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["progress"]["completed"] == 1


# ---------------------------------------------------------------------- command jobs


async def test_command_output_read_in_two_chunks(api: Api) -> None:
    script = "import os; print('first line'); print('ünïcødé ✓'); print('greeting=' + os.environ['GREETING'])"
    job = await api.submit("command", {"argv": [sys.executable, "-c", script], "env": {"GREETING": "hello"}})
    done = await api.wait_for(job["id"], TERMINAL)
    assert done["status"] == "SUCCEEDED", done
    status, result, _ = await api.call("GET", f"/v1/jobs/{job['id']}/result")
    assert (status, result["result"]) == (200, {"returncode": 0})

    expected = "first line\nünïcødé ✓\ngreeting=hello\n"
    whole = await api.logs(job["id"])
    assert whole["data"] == expected and whole["complete"] is True
    assert whole["next_offset"] == len(expected.encode())

    # A limit that ends inside "ü" (2 bytes): the service backs off to the character boundary.
    cut = len(b"first line\n") + 1
    first = await api.logs(job["id"], limit=cut)
    assert first["data"] == "first line\n"
    assert (first["offset"], first["next_offset"], first["complete"]) == (0, cut - 1, False)
    second = await api.logs(job["id"], offset=first["next_offset"])
    assert first["data"] + second["data"] == expected
    assert second["next_offset"] == len(expected.encode()) and second["complete"] is True

    beyond = await api.logs(job["id"], offset=10_000)
    assert (beyond["data"], beyond["next_offset"], beyond["complete"]) == ("", len(expected.encode()), True)
    status, problem, headers = await api.call("GET", f"/v1/jobs/{job['id']}/logs", params={"offset": -1})
    assert_problem(status, problem, headers, 400, "invalid-request")


async def test_command_failures(api: Api, tmp_path: Path) -> None:
    exit3 = await api.submit("command", {"argv": [sys.executable, "-c", "import sys; sys.exit(3)"]})
    failed = await api.wait_for(exit3["id"], TERMINAL)
    assert failed["status"] == "FAILED"
    assert failed["error"] == {"type": "NonZeroExit", "message": "command exited with code 3"}

    nowhere = await api.submit("command", {"argv": ["/definitely/not/a/program", "x"]})
    failed = await api.wait_for(nowhere["id"], TERMINAL)
    assert failed["status"] == "FAILED" and failed["error"]["type"] == "ExecutableNotFound"
    assert "/definitely/not/a/program" in failed["error"]["message"]

    in_dir = await api.submit("command", {"argv": [sys.executable, "-c", "import os; print(os.getcwd())"], "cwd": str(tmp_path)})
    assert (await api.wait_for(in_dir["id"], TERMINAL))["status"] == "SUCCEEDED"
    assert (await api.logs(in_dir["id"]))["data"].strip() == str(tmp_path)


# ---------------------------------------------------------------------- cancel and timeout


async def test_cancel_running_command_stops_its_process(api: Api) -> None:
    job = await api.submit("command", {"argv": SLEEP_60})
    pid = int(await api.wait_for_log(job["id"]))
    assert pid_alive(pid)
    cancelling = await api.cancel(job["id"])
    assert cancelling["status"] in {"CANCELLING", "CANCELLED"}
    cancelled = await api.wait_for(job["id"], TERMINAL, timeout=10)
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["error"] == {"type": "Cancelled", "message": "cancelled by request"}
    assert not pid_alive(pid), f"process {pid} of a cancelled job is still alive"
    again = await api.cancel(job["id"])
    assert again == cancelled, "cancelling a terminal job changes nothing"


async def test_cancel_kills_a_process_that_ignores_sigterm_after_the_grace(api: Api) -> None:
    job = await api.submit("command", {"argv": IGNORE_TERM_SLEEP_60})
    pid = int(await api.wait_for_log(job["id"]))  # printed after the handler was installed
    started = time.monotonic()
    cancelling = await api.cancel(job["id"])
    assert cancelling["status"] == "CANCELLING"
    assert (await api.cancel(job["id"]))["version"] == cancelling["version"], "repeating cancel is harmless"
    cancelled = await api.wait_for(job["id"], TERMINAL, timeout=15)
    elapsed = time.monotonic() - started
    assert cancelled["status"] == "CANCELLED"
    assert 0.9 <= elapsed < 10, f"SIGKILL should follow the 1 s grace; took {elapsed:.2f}s"
    assert not pid_alive(pid)


async def test_cancel_running_sleep_job_is_immediate(api: Api) -> None:
    job = await api.submit("sleep", {"seconds": 60})
    await api.wait_for(job["id"], {"RUNNING"})
    cancelled = await api.cancel(job["id"])
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["finished_at"] is not None
    assert await api.get(job["id"]) == cancelled


async def test_timeout_fails_the_job(api: Api) -> None:
    sleeper = await api.submit("sleep", {"seconds": 60}, timeout_s=0.3)
    failed = await api.wait_for(sleeper["id"], TERMINAL, timeout=10)
    assert failed["status"] == "FAILED"
    assert failed["error"] == {"type": "Timeout", "message": "job exceeded timeout_s=0.3"}

    started = time.monotonic()
    command = await api.submit("command", {"argv": SLEEP_60}, timeout_s=0.5)
    failed = await api.wait_for(command["id"], TERMINAL, timeout=10)
    assert failed["status"] == "FAILED"
    assert failed["error"] == {"type": "Timeout", "message": "job exceeded timeout_s=0.5"}
    assert time.monotonic() - started < 8


# ---------------------------------------------------------------------- reading


async def test_long_poll_returns_on_change_or_after_wait_s(api: Api) -> None:
    job = await api.submit("sleep", {"seconds": 60})
    running = await api.wait_for(job["id"], {"RUNNING"})

    poll = asyncio.create_task(api.get(job["id"], wait_s=30, seen=running["version"]))
    await asyncio.sleep(0.3)  # let the poll park on the server; the assertion below does not depend on it
    assert not poll.done()
    changed_at = time.monotonic()
    await api.cancel(job["id"])
    changed = await asyncio.wait_for(poll, 10)
    assert changed["status"] == "CANCELLED" and changed["version"] > running["version"]
    assert time.monotonic() - changed_at < 2, "long-poll must return right after the change"

    started = time.monotonic()
    same = await api.get(job["id"], wait_s=0.5, seen=changed["version"])
    waited = time.monotonic() - started
    assert same["version"] == changed["version"]
    assert 0.45 <= waited < 5, f"an unchanged job must be returned after wait_s; took {waited:.2f}s"

    started = time.monotonic()
    await api.get(job["id"], wait_s=30, seen=changed["version"] - 1)
    await api.get(job["id"], wait_s=30)
    assert time.monotonic() - started < 2, "a different or missing 'seen' returns at once"

    for params in [{"wait_s": 61}, {"wait_s": "soon"}, {"wait_s": -1}, {"seen": "x"}, {"wait_s": "nan"}, {"bogus": 1}]:
        status, problem, headers = await api.call("GET", f"/v1/jobs/{job['id']}", params=params)
        assert_problem(status, problem, headers, 400, "invalid-request")


async def test_listing_pagination_filters_and_batch(tmp_path: Path) -> None:
    with LocalService(tmp_path) as service:
        async with api_for(service) as api:
            quick = [await api.submit("sleep", {"seconds": 0}) for _ in range(7)]
            slow = [await api.submit("sleep", {"seconds": 60}) for _ in range(3)]
            await api.cancel(slow[0]["id"])
            for job in quick:
                await api.wait_for(job["id"], {"SUCCEEDED"})
            submitted = [job["id"] for job in quick + slow]

            pages: list[list[str]] = []
            seen_ids: list[str] = []
            cursor = None
            late = None
            while True:
                params: dict[str, Any] = {"limit": 3}
                if cursor:
                    params["cursor"] = cursor
                status, page, _ = await api.call("GET", "/v1/jobs", params=params)
                assert status == 200, page
                pages.append([job["id"] for job in page["jobs"]])
                seen_ids.extend(pages[-1])
                if late is None:
                    late = await api.submit("sleep", {"seconds": 0})  # inserted while paginating
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert late is not None
            assert seen_ids == [*submitted, late["id"]], "pages must be stable and in creation order"
            assert [len(page) for page in pages] == [3, 3, 3, 2]

            async def listed(params: Any) -> list[str]:
                status, body, _ = await api.call("GET", "/v1/jobs", params=params)
                assert status == 200, body
                return [job["id"] for job in body["jobs"]]

            await api.wait_for(late["id"], {"SUCCEEDED"})
            succeeded = [job["id"] for job in quick] + [late["id"]]
            assert await listed({"status": "succeeded"}) == succeeded
            assert await listed([("status", "RUNNING"), ("status", "CANCELLED")]) == submitted[7:]
            assert await listed({"status": "running,cancelled", "type": "sleep"}) == submitted[7:]
            assert await listed({"type": "command"}) == []
            assert await listed({"created_after": quick[4]["created_at"]}) == [*submitted[5:], late["id"]]

            bad_queries: list[tuple[Any, str]] = [
                ({"status": "DONE"}, "invalid-request"),
                ({"limit": 0}, "invalid-request"),
                ({"limit": 1001}, "invalid-request"),
                ({"cursor": "garbage!"}, "invalid-request"),
                ({"created_after": "yesterday"}, "invalid-request"),
                ([("id", quick[0]["id"]), ("status", "QUEUED")], "invalid-request"),
                ([("id", f"j_{i:032x}") for i in range(101)], "too-many-ids"),
            ]
            for query, slug in bad_queries:
                status, problem, headers = await api.call("GET", "/v1/jobs", params=query)
                assert_problem(status, problem, headers, 400, slug)

            unknown = "j_" + "f" * 32
            batch = await api.batch([slow[1]["id"], unknown, quick[0]["id"], slow[1]["id"]])
            assert [job["id"] for job in batch["jobs"]] == [slow[1]["id"], quick[0]["id"]]
            assert batch["missing"] == [unknown]

            status, health, _ = await api.call("GET", "/v1/health")
            assert health["jobs"]["SUCCEEDED"] == 8 and health["jobs"]["RUNNING"] == 2
            assert health["jobs"]["CANCELLED"] == 1


def test_local_service_imports_neither_airflow_nor_the_provider() -> None:
    code = (
        "import sys, jobservice_local.cli, jobservice_local.pyrunner, jobservice_local.testing;"
        " bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'jobservice_provider'));"
        " assert not bad, bad[:5]"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


async def test_watch_answers_with_only_the_jobs_that_changed(api: Api) -> None:
    slow = (await api.submit("sleep", {"seconds": 30}))["id"]
    quick = (await api.submit("sleep", {"seconds": 0.8}))["id"]
    # Past QUEUED, so the only change left within the watch is the quick job's end.
    await api.wait_for(slow, {"RUNNING"})
    await api.wait_for(quick, lambda job: job["status"] != "QUEUED")
    versions = {job["id"]: job["version"] for job in (await api.batch([slow, quick]))["jobs"]}
    loop = asyncio.get_running_loop()

    started = loop.time()
    answer = await api.watch(versions, wait_s=20)
    elapsed = loop.time() - started
    assert [job["id"] for job in answer["jobs"]] == [quick], "only the job that changed is returned"
    assert answer["jobs"][0]["status"] == "SUCCEEDED" and answer["missing"] == []
    assert 0.3 < elapsed < 5, f"the watch must answer when the quick job ends; took {elapsed:.2f}s"
    assert answer["jobs"][0] == await api.get(quick), "a watched job comes as its full record"

    # An id with no job is a difference in itself: answered at once.
    unknown = "j_" + "e" * 32
    started = loop.time()
    answer = await api.watch({slow: versions[slow], unknown: 1}, wait_s=20)
    assert answer == {"jobs": [], "missing": [unknown]}
    assert loop.time() - started < 2, "a missing id must be answered at once"

    # Nothing changes within wait_s: empty lists after wait_s.
    started = loop.time()
    answer = await api.watch({slow: versions[slow]}, wait_s=0.5)
    assert answer == {"jobs": [], "missing": []}
    assert loop.time() - started >= 0.5

    # The most ids a watch takes, all unknown: answered at once, every one listed, in order.
    most = [f"j_{i:032x}" for i in range(10_000)]
    started = loop.time()
    answer = await api.watch(dict.fromkeys(most, 1), wait_s=20)
    assert answer == {"jobs": [], "missing": most}
    assert loop.time() - started < 5

    bad_bodies: list[tuple[Any, str]] = [
        ({"wait_s": 1}, "seen"),
        ({"seen": [slow]}, "seen"),
        ({"seen": {}}, "seen"),
        ({"seen": {slow: "2"}}, "seen"),
        ({"seen": {slow: True}}, "seen"),
        ({"seen": {slow: 2.5}}, "seen"),
        ({"seen": {slow: -1}}, "seen"),
        ({"seen": {"": 1}}, "seen"),
        ({"seen": {slow: 1}, "wait_s": -1}, "wait_s"),
        ({"seen": {slow: 1}, "wait_s": 61}, "wait_s"),
        ({"seen": {slow: 1}, "wait_s": "soon"}, "wait_s"),
        ({"seen": {slow: 1}, "wait_s": None}, "wait_s"),
        ({"seen": {slow: 1}, "wait_s": False}, "wait_s"),
        ({"seen": {slow: 1}, "since": 5}, "since"),
    ]
    for body, param in bad_bodies:
        status, problem, headers = await api.call("POST", "/v1/watch", json=body)
        assert_problem(status, problem, headers, 400, "invalid-request")
        assert problem["param"] == param, (body, problem)
    for raw in (b"[]", b'"seen"', b"{not json"):
        status, problem, headers = await api.call("POST", "/v1/watch", data=raw)
        assert_problem(status, problem, headers, 400, "invalid-request")
    status, problem, headers = await api.call("POST", "/v1/watch", json={"seen": {slow: 1}}, params={"wait_s": 1})
    assert_problem(status, problem, headers, 400, "invalid-request")
    assert problem["param"] == "wait_s"

    too_many = {f"j_{i:032x}": 1 for i in range(10_001)}
    status, problem, headers = await api.call("POST", "/v1/watch", json={"seen": too_many})
    assert_problem(status, problem, headers, 400, "too-many-ids")
    assert problem["max_ids"] == 10_000

    status, problem, headers = await api.call("POST", "/v1/watch", json={"seen": {slow: 1}}, auth=False)
    assert_problem(status, problem, headers, 401, "unauthorized")

    # The batch lookup no longer long-polls: its old parameters are unknown now.
    for extra in (("seen", "1"), ("wait_s", "1")):
        status, problem, headers = await api.call("GET", "/v1/jobs", params=[("id", slow), extra])
        assert_problem(status, problem, headers, 400, "invalid-request")
        assert problem["param"] == extra[0]
    await api.cancel(slow)
