"""The Ray tier: a real Ray head (``ray start --head --block``) on 127.0.0.1 for the session.

Ray lives in its own environment (``.ray-venv``, made by ``.ci/setup.d/30-ray.sh``), never in
the provider's. The head is bound to loopback, given 2 CPUs and free ports, and stopped by
SIGTERM to the PID we started; teardown checks with ``ps`` that none of its processes is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REPO, conn_json
from tests.ray.local_job_types import LOCAL_JOB_TYPES_ON_RAY

START_TIMEOUT = 120.0
STOP_TIMEOUT = 40.0
SETUP_HINT = "install it with `bash .ci/setup.d/30-ray.sh` (or set JOBSERVICE_RAY_BIN to a ray executable)"
DOCS = REPO / "docs" / "dialects.md"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ray)


_COST: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _COST:
        terminalreporter.write_line(line)


def spec_from_docs(name: str) -> dict[str, Any]:
    """The declarative spec shown in docs/dialects.md under ``<!-- spec:NAME -->`` (so docs and tests cannot drift)."""
    match = re.search(rf"<!-- spec:{name} -->\s*```json\n(.*?)\n```", DOCS.read_text(), re.S)
    assert match, f"docs/dialects.md has no spec:{name} block"
    spec: dict[str, Any] = json.loads(match.group(1))
    return spec


def ray_bin() -> Path:
    configured = os.environ.get("JOBSERVICE_RAY_BIN")
    return Path(configured) if configured else REPO / ".ray-venv" / "bin" / "ray"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def session_processes(sid: int) -> dict[int, int]:
    """pid -> RSS (KiB) of every process in session ``sid`` (Ray's children stay in the session we started)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,rss="], capture_output=True, text=True, check=True).stdout
    rows = (line.split() for line in out.splitlines() if line.strip())
    return {int(pid): int(rss) for pid, s, rss in rows if int(s) == sid}


def pss_mib(pids: Iterable[int]) -> float:
    """Proportional set size (shared pages counted once) of ``pids``, where /proc tells it."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


@dataclasses.dataclass
class RayHead:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    started_in: float = 0.0
    idle_rss_mib: float = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        """SIGTERM to ``ray start --block`` (it drains and stops its children), SIGKILL as the fallback."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (left := session_processes(self.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"Ray processes still alive {STOP_TIMEOUT:g}s after SIGTERM (killed them): {sorted(left)}"


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    ray = ray_bin()
    if not (ray.is_file() and os.access(ray, os.X_OK)):
        pytest.skip(f"the Ray CLI is not installed ({ray} is missing); {SETUP_HINT}")
    # A short path: Ray puts Unix sockets under its temp dir, and those are limited to ~107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="jsray-", dir="/tmp"))
    dashboard, gcs, client_server, agent = free_ports(4)
    env = dict(os.environ)
    env.update(
        # Without this Ray binds GCS, raylet and the client server on every interface (job-services.md §1.1).
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        # A job that can never be scheduled fails after this instead of Ray's default 900 s.
        RAY_JOB_START_TIMEOUT_SECONDS="60",
        # Entrypoints run "python": make it Ray's own interpreter.
        PATH=f"{ray.parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("PYTHONPATH", None)
    log_path = temp_dir / "ray-start.log"
    command = [
        str(ray),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--port={gcs}",
        f"--ray-client-server-port={client_server}",
        f"--dashboard-agent-listen-port={agent}",
        "--num-cpus=2",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    head = RayHead(process, f"http://127.0.0.1:{dashboard}", log_path)
    try:
        deadline = started + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"ray start exited with {process.returncode} before its Jobs API answered:\n{head.log_tail()}")
            try:
                head.api("/api/jobs/")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(f"Ray's Jobs API did not answer within {START_TIMEOUT:g}s:\n{head.log_tail()}")
                time.sleep(0.25)
        head.started_in = time.monotonic() - started
        processes = session_processes(head.pid)
        head.idle_rss_mib = sum(processes.values()) / 1024
        _COST.append(
            f"Ray head: Jobs API up in {head.started_in:.1f}s; {len(processes)} processes, "
            f"ΣRSS {head.idle_rss_mib:.0f} MiB, ΣPSS {pss_mib(processes):.0f} MiB"
        )
        yield head
    finally:
        head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


RAY_CONNECTIONS = ("ray", "declarative", "preset")


@pytest.fixture(params=RAY_CONNECTIONS, ids=["ray-dialect", "declarative-ray-spec", "ray-preset"])
def ray_conn(request: pytest.FixtureRequest, ray_head: RayHead, monkeypatch: pytest.MonkeyPatch) -> str:
    """``jobservice_default`` pointed at the Ray head: with the ray dialect, with the declarative Ray spec
    written out (docs/dialects.md), and with that spec by name (``"preset": "ray"``, docs/presets/ray.md)."""
    monkeypatch.setenv("AIRFLOW_CONN_JOBSERVICE_DEFAULT", ray_conn_json(ray_head, request.param))
    return str(request.param)


def ray_conn_json(head: RayHead, dialect: str) -> str:
    """``ray``, ``declarative`` (the spec in docs/dialects.md), ``preset`` (the ``ray`` preset) or
    ``ray-local-types`` (the ray dialect running the example DAGs' ``sleep`` jobs, see tests/ray/local_job_types.py)."""
    if dialect == "ray":
        return conn_json(head.base_url, None, dialect="ray", poll_interval=0.5)
    if dialect == "ray-local-types":
        return conn_json(head.base_url, None, dialect="ray", dialect_options=LOCAL_JOB_TYPES_ON_RAY, poll_interval=0.5)
    if dialect == "preset":
        return conn_json(head.base_url, None, dialect="declarative", dialect_options={"preset": "ray"}, poll_interval=0.5)
    return conn_json(head.base_url, None, dialect="declarative", dialect_options=spec_from_docs("ray"), poll_interval=0.5)
