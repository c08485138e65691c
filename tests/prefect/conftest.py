"""The Prefect tier: a real Prefect 3 server and a runner serving the test flows, on 127.0.0.1, for the session.

Prefect lives in its own environment (``.prefect-venv``, made by ``.ci/setup.d/40-prefect.sh``), never
in the provider's. The server gets a scratch PREFECT_HOME (its SQLite database, its result storage) and
a free port; the runner (``flows.py``) serves one deployment per test flow. Both are stopped by the PID
we started, the runner first: stopped after the server, it hangs retrying "Pausing all deployments…"
(docs/../shared/reference: job-services.md §4). Teardown checks that no process of either is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REPO, conn_json

START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
SETUP_HINT = "install it with `bash .ci/setup.d/40-prefect.sh` (or set JOBSERVICE_PREFECT_VENV to a venv with prefect 3)"
FLOWS = Path(__file__).parent / "flows.py"
DEPLOYMENTS = ("echo", "long", "gate", "fail", "chatty")
API_RETRIES = 5


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.prefect)


_COST: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _COST:
        terminalreporter.write_line(line)


def prefect_venv() -> Path:
    configured = os.environ.get("JOBSERVICE_PREFECT_VENV")
    return Path(configured) if configured else REPO / ".prefect-venv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def session_processes(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True, check=True).stdout
    rows = (line.split() for line in out.splitlines() if line.strip())
    return [int(pid) for pid, s in rows if int(s) == sid]


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stop(process: subprocess.Popen[bytes], what: str) -> list[str]:
    """SIGTERM to the PID we started, SIGKILL after STOP_TIMEOUT; then every process of its session. Problems found."""
    problems = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append(f"{what} (pid {process.pid}) ignored SIGTERM for {STOP_TIMEOUT:g}s; killed it")
            process.kill()
            process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (left := session_processes(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        problems.append(f"{what}: processes still alive after it stopped (killed them): {sorted(left)}")
    return problems


@dataclasses.dataclass
class PrefectServer:
    """The server's API (``api_url`` is what PREFECT_API_URL would be) and the served deployments' ids by name."""

    api_url: str
    server: subprocess.Popen[bytes]
    home: Path
    deployments: dict[str, str] = dataclasses.field(default_factory=dict)
    runner: subprocess.Popen[bytes] | None = None

    def log_tail(self, name: str, size: int = 3000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One call of the test's own, retried as Prefect's client retries it.

        Prefect's server answers 503 when its SQLite database is busy (a "retryable" database error;
        the transaction was rolled back), and its own client retries 429, 502 and 503 up to five times
        with backoff. Seen in CI with the Ray and Airflow tiers loading the machine. The provider under
        test does its own retrying; this is only the harness that sets up and inspects flow runs.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        for attempt in range(API_RETRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as error:
                if error.code not in (429, 502, 503) or attempt == API_RETRIES:
                    raise
                retry_after = error.headers.get("Retry-After", "")
                time.sleep(float(retry_after) if retry_after.isdigit() else 2**attempt)
        raise AssertionError("unreachable")

    def flow_runs(self, deployment: str) -> list[dict[str, Any]]:
        body = {"deployments": {"id": {"any_": [self.deployments[deployment]]}}, "limit": 200}
        runs: list[dict[str, Any]] = self.api("POST", "/flow_runs/filter", body)
        return runs

    def logs(self, flow_run_id: str) -> list[dict[str, Any]]:
        """Every log record of a flow run, in Prefect's order (all pages)."""
        records: list[dict[str, Any]] = []
        while True:
            body = {
                "logs": {"flow_run_id": {"any_": [flow_run_id]}},
                "sort": "TIMESTAMP_ASC",
                "limit": 200,
                "offset": len(records),
            }
            page = self.api("POST", "/logs/filter", body)
            records.extend(page)
            if len(page) < 200:
                return records


def _wait_for(server: PrefectServer, what: str, ready: Any, deadline: float) -> None:
    while True:
        for name, process in (("server", server.server), ("runner", server.runner)):
            if process is not None and process.poll() is not None:
                pytest.fail(f"the Prefect {name} exited with {process.returncode} before {what}:\n{server.log_tail(name)}")
        try:
            if ready():
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what} did not happen within {START_TIMEOUT:g}s:\n{server.log_tail('server')}\n{server.log_tail('runner')}"
            )
        time.sleep(0.25)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    venv = prefect_venv()
    prefect, python = venv / "bin" / "prefect", venv / "bin" / "python"
    if not (prefect.is_file() and os.access(prefect, os.X_OK)):
        pytest.skip(f"Prefect is not installed ({prefect} is missing); {SETUP_HINT}")
    home = Path(tempfile.mkdtemp(prefix="jsprefect-"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "AIRFLOW"))}
    env.pop("PYTHONPATH", None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="1",  # the runner looks for new flow runs every second (default 10)
        PREFECT_CLI_COLORS="false",
    )
    started = time.monotonic()
    with open(home / "server.log", "wb") as log:
        process = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
        )
    server = PrefectServer(api_url, process, home)
    problems: list[str] = []
    try:
        deadline = started + START_TIMEOUT
        _wait_for(server, "the server's API answered", lambda: server.api("GET", "/health") is True, deadline)
        server_up = time.monotonic() - started
        with open(home / "runner.log", "wb") as log:
            server.runner = subprocess.Popen(
                [str(python), str(FLOWS)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=FLOWS.parent,
                start_new_session=True,
            )

        def served() -> bool:
            found = server.api("POST", "/deployments/filter", {"deployments": {"name": {"any_": list(DEPLOYMENTS)}}})
            server.deployments = {d["name"]: d["id"] for d in found if d.get("status") == "READY"}
            return set(server.deployments) == set(DEPLOYMENTS)

        _wait_for(server, "the runner served the test deployments", served, deadline)
        served_after = time.monotonic() - started - server_up
        _COST.append(
            f"Prefect: server API up in {server_up:.1f}s, deployments served {served_after:.1f}s later; "
            f"RSS server {rss_mib(process.pid):.0f} MiB, runner {rss_mib(server.runner.pid):.0f} MiB"
        )
        yield server
    finally:
        if server.runner is not None:
            problems += stop(server.runner, "the Prefect runner")
        problems += stop(process, "the Prefect server")
        shutil.rmtree(home, ignore_errors=True)
    assert not problems, problems


@pytest.fixture
def prefect_conn(prefect_server: PrefectServer, monkeypatch: pytest.MonkeyPatch) -> PrefectServer:
    """``jobservice_default`` pointed at the server through the ``prefect`` preset; the deployments' ids as Airflow Variables."""
    monkeypatch.setenv("AIRFLOW_CONN_JOBSERVICE_DEFAULT", prefect_conn_json(prefect_server))
    for name, deployment_id in prefect_server.deployments.items():
        monkeypatch.setenv(f"AIRFLOW_VAR_PREFECT_DEPLOYMENT_{name.upper()}", deployment_id)
    return prefect_server


def prefect_conn_json(server: PrefectServer, **options: Any) -> str:
    return conn_json(
        server.api_url, None, dialect="declarative", dialect_options={"preset": "prefect", **options}, poll_interval=0.5
    )
