"""The local job service on a developer's laptop: browsers, rebinding, hostile input, secrets, crashes (issue 14)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.support import local_service as support
from tests.support.local_service import TERMINAL, Api, LocalService, api_for, assert_problem

pytestmark = pytest.mark.integration

# What a web page can make a browser send to 127.0.0.1 without a CORS preflight, from a page
# whose host name a DNS rebinding attack has pointed at 127.0.0.1.
CROSS_SITE = {"Content-Type": "text/plain", "Origin": "http://evil.example", "Host": "attacker.rebind.example"}


@pytest.fixture(scope="module")
def command_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    token = f"secret-{uuid.uuid4().hex}"  # distinctive: found nowhere unless it leaked
    with LocalService(tmp_path_factory.mktemp("command-service"), token=token, extra_args=["--allow-command"]) as service:
        yield service


@pytest.fixture(scope="module")
def open_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """``--no-auth``: sleep jobs only (process job types cannot be combined with it)."""
    with LocalService(tmp_path_factory.mktemp("open-service"), token=None) as service:
        yield service


def own_host(service: LocalService) -> str:
    """The ``Host`` header a client of ``service`` sends (the shaping proxy's port in shaped mode)."""
    return service.base_url.removeprefix("http://")


async def job_count(api: Api) -> int:
    status, page, _ = await api.call("GET", "/v1/jobs")
    assert status == 200, page
    return len(page["jobs"])


async def raw_post(api: Api, body: str, headers: dict[str, str]) -> tuple[int, Any, Any]:
    return await api.call("POST", "/v1/jobs", data=body.encode(), headers=headers)


# ---------------------------------------------------------------------- browsers and rebinding


async def test_a_cross_site_post_is_refused_and_runs_nothing(command_svc: LocalService, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    body = f'{{"type": "command", "params": {{"argv": ["/bin/sh", "-c", "id > {marker}"]}}}}'
    async with api_for(command_svc) as api:
        before = await job_count(api)
        # Even with the right token (a page never has it), each browser rule alone refuses the request.
        own = own_host(command_svc)
        for headers, expected_status, slug in [
            (CROSS_SITE, 421, "host-not-allowed"),
            ({**CROSS_SITE, "Host": own}, 403, "cross-origin-request"),
            ({**CROSS_SITE, "Host": own, "Origin": f"http://{own}"}, 415, "unsupported-media-type"),
            ({"Content-Type": "application/json", "Host": own, "Sec-Fetch-Site": "cross-site"}, 403, "cross-origin-request"),
            ({"Content-Type": "application/x-www-form-urlencoded", "Host": own}, 415, "unsupported-media-type"),
        ]:
            status, problem, response_headers = await raw_post(api, body, headers)
            assert_problem(status, problem, response_headers, expected_status, slug)
        # The same body as JSON from a program, with the service's own Origin, is accepted: the rules refused the rest.
        status, job, _ = await raw_post(api, body, {"Content-Type": "application/json", "Origin": f"http://{own}"})
        assert status == 201, job
        await api.wait_for(job["id"], {"SUCCEEDED"})
        assert marker.exists()
        marker.unlink()
        status, _, _ = await raw_post(api, body, CROSS_SITE)
        await asyncio.sleep(0.5)
        assert status == 421 and not marker.exists(), "a refused request must run nothing"
        assert await job_count(api) == before + 1


async def test_without_auth_the_browser_rules_still_refuse(open_svc: LocalService) -> None:
    async with api_for(open_svc) as api:
        body = '{"type": "sleep", "params": {"seconds": 0}}'
        status, problem, headers = await raw_post(api, body, CROSS_SITE)
        assert_problem(status, problem, headers, 421, "host-not-allowed")
        assert "attacker.rebind.example" in problem["detail"]
        status, problem, headers = await raw_post(api, body, {**CROSS_SITE, "Host": own_host(open_svc)})
        assert_problem(status, problem, headers, 403, "cross-origin-request")
        assert "evil.example" in problem["detail"]
        assert await job_count(api) == 0


async def test_the_host_header_must_name_the_service(open_svc: LocalService) -> None:
    port = own_host(open_svc).rpartition(":")[2]
    async with api_for(open_svc) as api:
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.2", "localhost.evil.example", "[::1]"):
            status, problem, headers = await api.call("GET", "/v1/health", headers={"Host": host})
            assert_problem(status, problem, headers, 421, "host-not-allowed")
            assert "localhost" in problem["detail"] and "127.0.0.1" in problem["detail"]
        for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST.", "127.0.0.1:1"):
            status, health, _ = await api.call("GET", "/v1/health", headers={"Host": host})
            assert status == 200, (host, health)


async def test_allowed_host_adds_a_name(tmp_path: Path) -> None:
    with LocalService(tmp_path, extra_args=["--allowed-host", "jobs.internal"]) as service:
        async with api_for(service) as api:
            status, health, _ = await api.call("GET", "/v1/health", headers={"Host": "jobs.internal:8765"})
            assert status == 200, health
            status, problem, headers = await api.call("GET", "/v1/health", headers={"Host": "other.internal"})
            assert_problem(status, problem, headers, 421, "host-not-allowed")


@pytest.mark.parametrize("flags", [["--allow-command"], ["--allow-python"], ["--allow-python", "--allow-command"]])
def test_no_auth_with_process_job_types_exits_with_a_clear_message(tmp_path: Path, flags: list[str]) -> None:
    db = tmp_path / "x.db"
    command = support.serve_command("--port", "0", "--db", db, "--no-auth", *flags)
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "refusing --no-auth with " + " and ".join(flags) in refused.stderr
    assert "arbitrary code" in refused.stderr and not db.exists()


# ---------------------------------------------------------------------- bad input cannot poison it


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_params_beyond_the_limits_are_400_naming_the_limit(command_svc: LocalService) -> None:
    async with api_for(command_svc) as api:
        before = await job_count(api)
        for params, limit, mentioned in [
            (f'{{"result": {nested(1000)}}}', "max_depth", "64"),
            (f'{{"result": {nested(63)}}}', "max_depth", "64"),  # the body is level 1, params 2, result 3…
            ('{"seconds": 1e400}', "finite_numbers", "1e400"),
            ('{"result": -1e400}', "finite_numbers", "-1e400"),
            ('{"result": 123456789012345678901234567890}', "integer_range", "9223372036854775807"),
            ('{"result": NaN}', "finite_numbers", "NaN"),
            ('{"result": Infinity}', "finite_numbers", "Infinity"),
        ]:
            body = f'{{"type": "sleep", "params": {params}}}'
            status, problem, headers = await raw_post(api, body, {"Content-Type": "application/json"})
            assert_problem(status, problem, headers, 400, "invalid-request")
            assert problem["limit"] == limit and mentioned in problem["detail"], problem
        assert await job_count(api) == before, "a refused submission stores nothing"

        # Just within the limits (body, params, result, d: 4 levels, then 60 more): stored, run and read back.
        status, job, _ = await raw_post(
            api,
            f'{{"type": "sleep", "params": {{"seconds": 0, "result": {{"d": {nested(60)}, "n": 9223372036854775807}}}}}}',
            {"Content-Type": "application/json"},
        )
        assert status == 201, job
        await api.wait_for(job["id"], {"SUCCEEDED"})
        status, result, _ = await api.call("GET", f"/v1/jobs/{job['id']}/result")
        assert status == 200 and result["result"] == {"d": json.loads(nested(60)), "n": 2**63 - 1}
        assert (await api.batch([job["id"]]))["jobs"][0]["status"] == "SUCCEEDED"
        assert (await api.watch({job["id"]: 1}))["jobs"][0]["id"] == job["id"]


async def test_a_deeply_nested_cursor_is_400(command_svc: LocalService) -> None:
    async with api_for(command_svc) as api:
        for raw in (
            nested(2000).encode(),
            nested(300).encode(),
            b'["2026-01-01T00:00:00.000000Z", "j_1", ' + nested(3).encode() + b"]",
            b"1e400",
        ):
            cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            status, problem, headers = await api.call("GET", "/v1/jobs", params={"cursor": cursor})
            assert_problem(status, problem, headers, 400, "invalid-request")
            assert problem["param"] == "cursor"


async def test_an_undecodable_row_fails_that_job_only(tmp_path: Path) -> None:
    """A database holding rows this service cannot decode starts, serves every other job, and fails those."""
    service = LocalService(tmp_path, extra_args=["--max-concurrency", "1"])
    with service:
        async with api_for(service) as api:
            done = await api.submit("sleep", {"seconds": 0, "result": "kept"})
            await api.wait_for(done["id"], {"SUCCEEDED"})
            blocker = await api.submit("sleep", {"seconds": 60})
            await api.wait_for(blocker["id"], {"RUNNING"})
            queued = [await api.submit("sleep", {"seconds": 0, "result": i}) for i in range(4)]
            await api.cancel(blocker["id"])
            await api.wait_for(queued[-1]["id"], {"SUCCEEDED"})
            poisoned_queued = await api.submit("sleep", {"seconds": 60})
            await api.wait_for(poisoned_queued["id"], {"RUNNING"})
            still_queued = await api.submit("sleep", {"seconds": 0, "result": "after"})
    # What an older service (or a disk) can leave behind: params nested past any parser, text that is
    # not JSON, a status this service never writes.
    with sqlite3.connect(service.db_path) as db:
        db.execute(
            "UPDATE jobs SET params = ?, status = 'QUEUED' WHERE id = ?", ('{"x": ' + nested(5000) + "}", poisoned_queued["id"])
        )
        db.execute("UPDATE jobs SET params = 'not json' WHERE id = ?", (queued[0]["id"],))
        db.execute("UPDATE jobs SET status = 'TELEPORTED' WHERE id = ?", (queued[1]["id"],))
    bad = [poisoned_queued["id"], queued[0]["id"], queued[1]["id"]]

    with service:
        async with api_for(service) as api:
            after = await api.wait_for(still_queued["id"], {"SUCCEEDED"})
            assert (await api.call("GET", f"/v1/jobs/{still_queued['id']}/result"))[1]["result"] == "after"
            assert after["status"] == "SUCCEEDED"
            for job_id in bad:
                job = await api.get(job_id)
                assert job["status"] == "FAILED" and job["finished_at"] is not None, job
                assert job["error"]["type"] == "UndecodableRecord"
                assert "could not decode this job's stored record" in job["error"]["message"]
                status, problem, headers = await api.call("GET", f"/v1/jobs/{job_id}/result")
                assert_problem(status, problem, headers, 409, "job-not-succeeded")
            assert "RecursionError" not in (await api.get(poisoned_queued["id"]))["error"]["message"]
            batch = await api.batch([done["id"], *bad, queued[2]["id"]])
            assert [job["status"] for job in batch["jobs"]] == ["SUCCEEDED", "FAILED", "FAILED", "FAILED", "SUCCEEDED"]
            status, page, _ = await api.call("GET", "/v1/jobs", params={"limit": 1000})
            assert status == 200 and len(page["jobs"]) == 8, page
            watched = await api.watch({job_id: 1 for job_id in bad})
            assert sorted(job["id"] for job in watched["jobs"]) == sorted(bad)
            status, health, _ = await api.call("GET", "/v1/health")
            assert status == 200 and health["jobs"]["FAILED"] == 3
            versions = {job["id"]: job["version"] for job in batch["jobs"]}
    with service:  # settled once: the next start reports them the same way, at the same version
        async with api_for(service) as api:
            again = await api.batch(list(versions))
            assert {job["id"]: job["version"] for job in again["jobs"]} == versions
            assert [job["status"] for job in again["jobs"]] == ["SUCCEEDED", "FAILED", "FAILED", "FAILED", "SUCCEEDED"]


# ---------------------------------------------------------------------- secrets and files

READ_PARENT = (
    "import os, sys; sys.stdout.buffer.write(open(f'/proc/{os.getppid()}/environ', 'rb').read().replace(b'\\0', b'\\n'));"
    " print('own:', sorted(os.environ))"
)


def test_the_token_is_not_in_ps_in_the_documented_usage(command_svc: LocalService) -> None:
    """The harness passes the token as documented ($JOBSERVICE_TOKEN): no command line shows it."""
    token = command_svc.token
    assert token is not None and token.startswith("secret-") and command_svc.process is not None
    pid = command_svc.process.pid
    ps = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True).stdout
    assert f"{pid} " in ps and token not in ps
    assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_a_job_cannot_read_the_token_from_the_services_environment(tmp_path: Path) -> None:
    token = f"secret-{uuid.uuid4().hex}"
    env = {**os.environ, "JOBSERVICE_TOKEN": token}
    db = tmp_path / "jobs.db"
    process = subprocess.Popen(
        support.serve_command("--port", "0", "--db", db, "--allow-command"), stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().split()[-1]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def call(method: str, path: str, body: Any = None) -> Any:
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        job = call("POST", "/v1/jobs", {"type": "command", "params": {"argv": [sys.executable, "-c", READ_PARENT]}})
        for _ in range(200):
            if (done := call("GET", f"/v1/jobs/{job['id']}?wait_s=5&seen={job['version']}"))["status"] in TERMINAL:
                break
            job = done
        log = call("GET", f"/v1/jobs/{job['id']}/logs")["data"]
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert done["status"] == "SUCCEEDED", (done, log)
    assert "PATH=" in log and "own:" in log, log  # it did read the service's environment, and its own
    assert token not in log and "JOBSERVICE_TOKEN" not in log


async def test_database_and_logs_are_readable_by_their_owner_only(command_svc: LocalService) -> None:
    async with api_for(command_svc) as api:
        job = await api.submit("command", {"argv": [sys.executable, "-c", "print('a line for the log')"]})
        await api.wait_for(job["id"], {"SUCCEEDED"})
    db = command_svc.db_path
    private = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock")]
    logs = sorted(Path(f"{db}.logs").glob("*.log"))
    assert logs
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in [*private, *logs] if path.exists()}
    assert db.name in modes and set(modes.values()) == {"0o600"}, modes
    assert oct(Path(f"{db}.logs").stat().st_mode & 0o777) == "0o700"


def serve_briefly(args: list[str | Path], while_listening: Callable[[str], None] | None = None) -> tuple[int | None, str, str]:
    """Start ``serve ARGS`` and stop it once it listens (or when it exits): exit code, stdout's first line, stderr.

    ``while_listening`` gets the service's base URL before it is stopped.
    """
    env = {name: value for name, value in os.environ.items() if name != "JOBSERVICE_TOKEN"}
    process = subprocess.Popen(
        support.serve_command("--port", "0", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    if first:
        try:
            if while_listening is not None:
                while_listening(first.split()[-1])
        finally:
            process.terminate()
    _, stderr = process.communicate(timeout=30)
    return process.returncode, first, stderr


def test_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token-0123456789\n")
    token_file.chmod(0o600)

    def guarded(base_url: str) -> None:
        def health(headers: dict[str, str]) -> int:
            request = urllib.request.Request(base_url + "/v1/health", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert health({}) == 401
        assert health({"Authorization": "Bearer file-token-0123456789"}) == 200

    code, first, stderr = serve_briefly(["--db", tmp_path / "a.db", "--token-file", token_file], guarded)
    assert "listening on" in first and "warning" not in stderr.lower(), stderr
    token_file.chmod(0o644)
    code, first, stderr = serve_briefly(["--db", tmp_path / "b.db", "--token-file", token_file])
    assert "listening on" in first and f"--token-file {token_file} can be read by other users" in stderr
    token_file.write_text("\n")
    code, first, stderr = serve_briefly(["--db", tmp_path / "c.db", "--token-file", token_file])
    assert code == 2 and "empty token" in stderr
    code, first, stderr = serve_briefly(["--db", tmp_path / "d.db", "--token-file", tmp_path / "missing"])
    assert code == 2 and "cannot read --token-file" in stderr
    code, first, stderr = serve_briefly(["--db", tmp_path / "e.db", "--token", "on-the-command-line"])
    assert "listening on" in first and "every local user can read it (ps)" in stderr


@pytest.mark.parametrize(
    ("flags", "says"), [([], "no code: python and command jobs are off"), (["--allow-command"], "run arbitrary code as")]
)
def test_a_non_loopback_host_warns_naming_what_is_exposed(tmp_path: Path, flags: list[str], says: str) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the warning comes, then the bind fails; nothing listens.
    code, first, stderr = serve_briefly(["--host", "192.0.2.1", "--db", tmp_path / "x.db", "--token", "t0123456789", *flags])
    assert code == 1 and first == ""
    assert "WARNING: --host 192.0.2.1 is not a loopback address" in stderr
    assert "submit and cancel jobs, read every job's params, results and logs" in stderr and says in stderr
    assert "clear text" in stderr


# ---------------------------------------------------------------------- every error is problem+json


async def raw_exchange(service: LocalService, request: bytes) -> tuple[int, str, Any]:
    """Send bytes as they are; return the answer's status, Content-Type and JSON body."""
    host, _, port = own_host(service).rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 20)
        return status, headers["content-type"], json.loads(body)
    finally:
        writer.close()


async def test_requests_aiohttp_refuses_itself_are_problem_json(command_svc: LocalService) -> None:
    host = own_host(command_svc).encode()
    auth = f"Authorization: Bearer {command_svc.token}\r\n".encode()
    cases: list[tuple[bytes, int, str]] = [
        (b"GET /v1/jobs/" + b"a" * 8200 + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 414, "uri-too-long"),
        (b"GET /v1/jobs?cursor=" + b"c" * 9000 + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 414, "uri-too-long"),
        (
            b"GET /v1/health HTTP/1.1\r\nHost: " + host + b"\r\nX-Big: " + b"b" * 10240 + b"\r\n\r\n",
            431,
            "header-fields-too-large",
        ),
        (b"GET /v1/health HTTP/1.1\r\nHost: " + host + b"\r\nX-" + b"n" * 10240 + b": 1\r\n\r\n", 431, "header-fields-too-large"),
        (
            b"GET /v1/health HTTP/1.1\r\nHost: " + host + b"\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(300)) + b"\r\n",
            431,
            "header-fields-too-large",
        ),
        (b"BLAH /v1/health\r\n\r\n", 400, "invalid-request"),
        (b"GET /v1/health HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: abc\r\n\r\n", 400, "invalid-request"),
        (
            b"POST /v1/jobs HTTP/1.1\r\nHost: " + host + b"\r\n" + auth + b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
            "invalid-request",
        ),
        (b"OPTIONS /v1/jobs HTTP/1.1\r\nHost: " + host + b"\r\n" + auth + b"\r\n", 405, "method-not-allowed"),
    ]
    for request, expected_status, slug in cases:
        status, content_type, problem = await raw_exchange(command_svc, request)
        assert (status, content_type.split(";")[0]) == (expected_status, "application/problem+json"), (request[:60], problem)
        assert problem["type"] == f"urn:jobservice:problem:{slug}" and problem["status"] == expected_status, problem
        assert problem["title"] and problem["detail"] and len(problem["detail"]) < 400, problem
    async with api_for(command_svc) as api:
        status, _, _ = await api.call("GET", "/v1/health")
        assert status == 200, "the service keeps serving after each of them"


# ---------------------------------------------------------------------- crash recovery without orphans


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def job_processes(service_pid: int, argv: list[str], count: int, timeout: float = 20) -> list[psutil.Process]:
    """The service's descendants running ``argv`` (at least ``count`` of them, waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p in psutil.Process(service_pid).children(recursive=True) if p.cmdline() == argv]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"no process {argv} under the service"
        time.sleep(0.05)


async def test_a_crash_leaves_no_orphan_and_the_job_fails_saying_the_service_restarted(tmp_path: Path) -> None:
    service = LocalService(tmp_path, extra_args=["--allow-command", "--cancel-grace", "1"])
    with service:
        assert service.process is not None
        async with api_for(service) as api:
            plain = await api.submit("command", {"argv": ["sleep", "300"]})
            # A leader that ignores SIGTERM, with a child of its own: the whole group must go, SIGKILL after the grace.
            stubborn_script = (
                "import signal, subprocess; signal.signal(signal.SIGTERM, signal.SIG_IGN); subprocess.run(['sleep', '301'])"
            )
            stubborn = await api.submit("command", {"argv": [sys.executable, "-c", stubborn_script]})
            cancelling = await api.submit("command", {"argv": [sys.executable, "-c", stubborn_script.replace("301", "302")]})
            for job in (plain, stubborn, cancelling):
                await api.wait_for(job["id"], {"RUNNING"})
            processes = [
                *job_processes(service.process.pid, ["sleep", "300"], 1),
                *job_processes(service.process.pid, ["sleep", "301"], 1),
                *job_processes(service.process.pid, ["sleep", "302"], 1),
                *job_processes(service.process.pid, [sys.executable, "-c", stubborn_script], 1),
            ]
            # The cancel is under way (CANCELLING, SIGTERM ignored) when the service dies. (A listing
            # answers from the database, so once it shows CANCELLING the crash cannot lose it.)
            assert (await api.cancel(cancelling["id"]))["status"] == "CANCELLING"
            status, page, _ = await api.call("GET", "/v1/jobs", params={"status": "CANCELLING"})
            assert status == 200 and [job["id"] for job in page["jobs"]] == [cancelling["id"]]
        service.kill()  # SIGKILL: no shutdown, the job processes are orphaned
        assert all(alive(p) for p in processes), "the crash left the jobs' processes running (what the restart must stop)"

        started = time.monotonic()
        service.start()
        assert not [p for p in processes if alive(p)], "the restart must stop every process the crash left behind"
        assert time.monotonic() - started < 15
        async with api_for(service) as api:
            answer = await api.batch([plain["id"], stubborn["id"], cancelling["id"]])
            failed_plain, failed_stubborn, cancelled = answer["jobs"]
            for failed in (failed_plain, failed_stubborn):
                assert failed["status"] == "FAILED" and failed["error"]["type"] == "ServiceRestarted", failed
                assert "the job service restarted while this job was running" in failed["error"]["message"]
                assert "stopped" in failed["error"]["message"], failed
            assert cancelled["status"] == "CANCELLED", cancelled
            plain_log = (await api.logs(plain["id"]))["data"]
            stubborn_log = (await api.logs(stubborn["id"]))["data"]
            assert "jobservice-local: the job service restarted" in plain_log and "SIGTERM" in plain_log
            assert "SIGKILL" in stubborn_log, stubborn_log


async def test_a_recorded_group_that_is_not_the_jobs_any_more_is_left_alone(tmp_path: Path) -> None:
    """After a crash, a recorded process id that now names a process started at another moment is never signalled.

    (As if the id had been handed out again: the database is made to record another start time
    for the job's process, which stands in for the other process.)
    """
    service = LocalService(tmp_path, extra_args=["--allow-command"])
    with service:
        async with api_for(service) as api:
            job = await api.submit("command", {"argv": ["sleep", "303"]})
            await api.wait_for(job["id"], {"RUNNING"})
            assert service.process is not None
            (sleeper,) = job_processes(service.process.pid, ["sleep", "303"], 1)
        service.kill()
    try:
        with sqlite3.connect(service.db_path) as db:
            pgid, marker = db.execute("SELECT pgid, proc_start FROM jobs WHERE id = ?", (job["id"],)).fetchone()
            assert pgid == sleeper.pid and marker
            boot, ticks = marker.rsplit(":", 1)
            db.execute("UPDATE jobs SET proc_start = ? WHERE id = ?", (f"{boot}:{int(ticks) - 100}", job["id"]))
        with service:
            async with api_for(service) as api:
                failed = await api.get(job["id"])
            assert failed["status"] == "FAILED" and "not its own any more" in failed["error"]["message"], failed
            assert "so it was not stopped" in failed["error"]["message"]
            assert alive(sleeper), "a process that is not provably the job's must never be signalled"
    finally:
        sleeper.kill()


async def test_a_database_of_the_previous_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    """Databases written before process groups were recorded open, gain the columns, and run their queued jobs."""
    db = tmp_path / "jobservice-local.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, key TEXT UNIQUE, fingerprint TEXT NOT NULL, type TEXT NOT NULL,"
            " params TEXT NOT NULL, meta TEXT NOT NULL, timeout_s REAL, status TEXT NOT NULL, version INTEGER NOT NULL,"
            " progress TEXT NOT NULL, attempt INTEGER NOT NULL, created_at TEXT NOT NULL, started_at TEXT,"
            " updated_at TEXT NOT NULL, finished_at TEXT, error TEXT, result TEXT)"
        )
        conn.execute(
            "INSERT INTO jobs VALUES ('j_old', NULL, 'f', 'sleep', '{\"seconds\": 0, \"result\": 7}', '{}', NULL, 'QUEUED', 1,"
            ' \'{"completed": 0, "total": null, "message": null}\', 1, \'2026-01-01T00:00:00.000000Z\', NULL,'
            " '2026-01-01T00:00:00.000000Z', NULL, NULL, NULL)"
        )
    with LocalService(tmp_path) as service:
        async with api_for(service) as api:
            await api.wait_for("j_old", {"SUCCEEDED"})
            assert (await api.call("GET", "/v1/jobs/j_old/result"))[1]["result"] == 7
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    assert {"pgid", "proc_start"} <= columns
