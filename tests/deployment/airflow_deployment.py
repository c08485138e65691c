"""A real Airflow 3.3 deployment for tests: every component is its own process, torn down by PID.

Usage (see ``docs/testing.md``; ``conftest.py`` provides it as the session fixture ``deployment``)::

    with AirflowDeployment(tmp_path, dag_files=[...]) as deployment:
        run_id = deployment.trigger_dag("example_submit_and_wait")
        deployment.wait_for_task_state("example_submit_and_wait", run_id, "train_model", {"deferred"})
        deployment.wait_for_run_state("example_submit_and_wait", run_id, {"success"})
        print(deployment.task_log("example_submit_and_wait", run_id, "train_model"))

What runs, all on 127.0.0.1, in a throwaway ``AIRFLOW_HOME`` under ``root``:

- ``airflow db migrate`` (SQLite), then ``airflow api-server``, ``scheduler`` (LocalExecutor),
  ``dag-processor`` and ``triggerer``, each started in its own process group with its output
  in ``root/logs/<component>.log``;
- the embedded job service (``LocalServiceProcess``), reachable by every component through
  ``AIRFLOW_CONN_JOBSERVICE_DEFAULT``;
- a REST API v2 client authenticated with a JWT from ``POST /auth/token`` (SimpleAuthManager,
  user ``admin`` with the password it generated).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import psutil

from jobservice_local.testing import LocalServiceProcess

T = TypeVar("T")

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
STOP_GRACE = 15.0
STARTUP_TIMEOUT = 180.0

# Settings that make a one-machine test deployment fast and deterministic; override any of
# them with ``config={"SECTION__KEY": value}``.
DEFAULT_CONFIG: dict[str, str] = {
    "CORE__EXECUTOR": "LocalExecutor",
    "CORE__LOAD_EXAMPLES": "False",
    "CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "CORE__TEST_CONNECTION": "Enabled",  # the UI's Test button is disabled by default
    "CORE__PARALLELISM": "32",
    "API__WORKERS": "1",
    "DAG_PROCESSOR__REFRESH_INTERVAL": "5",  # notice DAG files added by a test quickly
    "SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    "SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
    "TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    # A killed triggerer's triggers go to another one once its heartbeat is this old.
    "TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    "LOGGING__LOGGING_LEVEL": "INFO",
}


class DeploymentError(AssertionError):
    """The deployment did not reach an expected state; the message carries the relevant logs."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:])


def poll(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    interval: float = 0.5,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something other than None, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            raise DeploymentError(f"timed out after {timeout:g}s waiting for {what}\n{detail}")
        time.sleep(interval)


@dataclass
class Component:
    """One long-running ``airflow <command>`` process, started in its own process group."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        if self.running():
            raise DeploymentError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        self._mark(f"start #{self.starts}")
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,  # its own process group, so signals reach its children too
            )

    def signal_tree(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process group and to every descendant (task processes make their own groups)."""
        if self.process is None:
            return
        pid = self.process.pid
        try:
            descendants = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(sig)

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM the whole tree, SIGKILL what is left after ``grace`` seconds; return the exit code."""
        if self.process is None:
            return None
        try:
            tree = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        started = time.monotonic()
        self.signal_tree(signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
        code = self.process.wait(timeout=5)
        killed = f"; SIGKILL for {len(alive)} process(es) still alive after {grace:g}s" if alive else ""
        self._mark(f"stopped with SIGTERM in {time.monotonic() - started:.1f}s, exit code {code}{killed}")
        return code

    def _mark(self, event: str) -> None:
        with open(self.log_path, "a") as out:
            out.write(f"\n===== {self.name} {event} at {time.strftime('%H:%M:%S')} =====\n")

    def kill(self) -> int:
        """SIGKILL the process and everything it started, as a crash of its host would."""
        assert self.process is not None
        try:
            tree = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        self.signal_tree(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=10)
        code = self.process.wait(timeout=10)
        self._mark(f"killed with SIGKILL ({len(tree)} processes)")
        return code


@dataclass
class AirflowDeployment:
    """Scheduler, dag-processor, triggerer and api-server in a throwaway AIRFLOW_HOME, plus the local job service.

    :param root: an empty directory for everything (AIRFLOW_HOME, DAGs, logs, the service's DB).
    :param dag_files: DAG files copied into the deployment's DAGS_FOLDER before start.
    :param config: extra Airflow settings as ``{"SECTION__KEY": value}`` (become ``AIRFLOW__SECTION__KEY``).
    :param conn_extra: extras of the ``jobservice_default`` connection.
    :param env: more environment variables for every component.
    :param service_args: more ``jobservice-local serve`` options, e.g. ``["--allow-python"]``.
    """

    root: Path
    dag_files: Sequence[Path] = ()
    config: Mapping[str, str] = field(default_factory=dict)
    conn_extra: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    service_args: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.home = self.root / "airflow-home"
        self.dags_folder = self.root / "dags"
        self.logs_dir = self.root / "logs"
        self.task_logs_dir = self.home / "logs"
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        # LocalServiceProcess hands the token over in $JOBSERVICE_TOKEN (never on the command line).
        self.service = LocalServiceProcess(self.root / "jobservice", token=secrets.token_hex(20), extra_args=self.service_args)
        self.components: dict[str, Component] = {}
        self.password: str | None = None
        self._token: str | None = None
        self._client: httpx.Client | None = None
        self.startup_seconds: float | None = None
        self._secrets = {"jwt": secrets.token_urlsafe(32), "api": secrets.token_urlsafe(32), "fernet": _fernet_key()}
        self._ports = {"worker_logs": free_port(), "trigger_logs": free_port()}

    # -- lifecycle -------------------------------------------------------------------------
    def airflow_env(self) -> dict[str, str]:
        """The environment every component runs with (no AIRFLOW_* leaks in from the test process)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        settings = {**DEFAULT_CONFIG, **self.config}
        env = {
            **base,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secrets["jwt"],
            "AIRFLOW__API__SECRET_KEY": self._secrets["api"],
            "AIRFLOW__CORE__FERNET_KEY": self._secrets["fernet"],
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_logs_dir),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._ports["worker_logs"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._ports["trigger_logs"]),
            "AIRFLOW_CONN_JOBSERVICE_DEFAULT": json.dumps(
                {
                    "conn_type": "jobservice",
                    "host": self.service.base_url,
                    "password": self.service.token,
                    "extra": dict(self.conn_extra),
                }
            ),
            "PYTHONUNBUFFERED": "1",
            **{f"AIRFLOW__{key.upper()}": str(value) for key, value in settings.items()},
            **self.env,
        }
        return env

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def start(self) -> AirflowDeployment:
        """Migrate the DB, start the job service and the four components, and wait until all are healthy."""
        started = time.monotonic()
        for path in (self.home, self.dags_folder, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        for dag_file in self.dag_files:
            shutil.copy(dag_file, self.dags_folder / Path(dag_file).name)
        self.service.start()
        env = self.airflow_env()
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        (self.logs_dir / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
        if migrate.returncode != 0:
            raise DeploymentError(
                f"airflow db migrate failed ({migrate.returncode}):\n{(migrate.stdout + migrate.stderr)[-4000:]}"
            )
        argv = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }
        for name in COMPONENTS:
            self.components[name] = Component(name, [sys.executable, "-m", "airflow", *argv[name]], self.logs_dir / f"{name}.log")
            self.components[name].start(env, self.root)
        self.wait_healthy(STARTUP_TIMEOUT)
        self.password = poll("the SimpleAuthManager password file", self._read_password, 30, on_timeout=self.diagnostics)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL after a grace period) and the job service."""
        if self._client is not None:
            self._client.close()
            self._client = None
        try:
            for name in reversed(COMPONENTS):
                component = self.components.get(name)
                if component is not None:
                    component.stop()
        finally:
            self.service.stop()

    def __enter__(self) -> AirflowDeployment:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def kill_component(self, name: str) -> int:
        """SIGKILL one component and all its children (a crash: no cleanup, no final heartbeat)."""
        return self.components[name].kill()

    def stop_component(self, name: str) -> int | None:
        """Stop one component gracefully (SIGTERM, SIGKILL after a grace period)."""
        return self.components[name].stop()

    def start_component(self, name: str) -> None:
        """Start a stopped or killed component again with the same command and environment."""
        self.components[name].start(self.airflow_env(), self.root)

    # -- health and diagnostics ------------------------------------------------------------
    def health(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_healthy(self, timeout: float = 60, components: Iterable[str] = ("scheduler", "triggerer", "dag_processor")) -> None:
        """Wait until the api-server answers and the given components heartbeat."""
        wanted = tuple(components)

        def check() -> bool | None:
            for component in self.components.values():
                if component.process is not None and not component.running():
                    raise DeploymentError(
                        f"{component.name} exited with code {component.process.returncode}\n{self.diagnostics()}"
                    )
            health = self.health() or {}
            statuses = [(health.get(name) or {}).get("status") for name in ("metadatabase", *wanted)]
            return True if all(status == "healthy" for status in statuses) else None

        poll("a healthy deployment (" + ", ".join(wanted) + ")", check, timeout, interval=1, on_timeout=self.diagnostics)

    def diagnostics(self, lines: int = 40) -> str:
        """The tails of every component's output and of the job service's stderr."""
        parts = [f"--- health: {self.health()}"]
        for name, component in self.components.items():
            state = "running" if component.running() else f"exited {component.process.returncode if component.process else '-'}"
            parts.append(f"--- {name} (pid {component.pid}, {state}), last {lines} lines of {component.log_path}:")
            parts.append(tail(component.log_path, lines))
        parts.append(f"--- job service stderr ({self.service.stderr_path}):")
        parts.append(tail(self.service.stderr_path, lines))
        return "\n".join(parts)

    def _read_password(self) -> str | None:
        try:
            return str(json.loads(self.passwords_file.read_text())[ADMIN_USER])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    # -- REST API v2 -----------------------------------------------------------------------
    def token(self) -> str:
        """A JWT for user ``admin`` from ``POST /auth/token`` (cached)."""
        if self._token is None:
            response = httpx.post(
                f"{self.base_url}/auth/token", json={"username": ADMIN_USER, "password": self.password}, timeout=30
            )
            if response.status_code not in (200, 201):
                raise DeploymentError(f"POST /auth/token answered {response.status_code}: {response.text[:500]}")
            self._token = str(response.json()["access_token"])
        return self._token

    @property
    def api(self) -> httpx.Client:
        """An authenticated client for the api-server (REST API v2 under ``/api/v2``, UI API under ``/ui``)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=60)
        return self._client

    def request(self, method: str, path: str, expect: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """Call the API and return the decoded JSON; a status outside ``expect`` fails with the body."""
        response = self.api.request(method, path, **kwargs)
        if response.status_code not in tuple(expect):
            raise DeploymentError(f"{method} {path} answered {response.status_code}: {response.text[:2000]}")
        if not response.content:
            return None
        return response.json() if "json" in response.headers.get("content-type", "") else response.text

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120) -> None:
        """Wait until the dag-processor has parsed the given DAGs; fail at once on an import error."""
        wanted = set(dag_ids)

        def check() -> bool | None:
            errors = self.request("GET", "/api/v2/importErrors")
            if errors["total_entries"]:
                raise DeploymentError(f"DAG import errors: {json.dumps(errors['import_errors'], indent=1)[:4000]}")
            dags = self.request("GET", "/api/v2/dags", params={"limit": 1000})
            known = {dag["dag_id"] for dag in dags["dags"]}
            return True if wanted <= known else None

        poll(f"DAGs {sorted(wanted)} to be parsed", check, timeout, interval=1, on_timeout=self.diagnostics)

    def add_dag_file(self, path: Path, dag_ids: Iterable[str], timeout: float = 120) -> None:
        """Copy a DAG file into the DAGS_FOLDER and wait until its DAGs are parsed."""
        shutil.copy(path, self.dags_folder / Path(path).name)
        self.wait_for_dags(dag_ids, timeout)

    def trigger_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a DAG run through the REST API; return its run id."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", expect=(200,), json=body)
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones included (one entry per map index)."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.request(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(found)}
            )
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        return dict(self.request("GET", path if map_index < 0 else f"{path}/{map_index}"))

    def wait_for_run_state(self, dag_id: str, run_id: str, states: Iterable[str], timeout: float = 180) -> str:
        """Wait until the run is in one of ``states``; fail early if it ends in another final state."""
        wanted = set(states)

        def check() -> str | None:
            state = str(self.dag_run(dag_id, run_id)["state"])
            if state in wanted:
                return state
            if state in ("success", "failed"):
                raise DeploymentError(
                    f"run {dag_id}/{run_id} ended {state}, expected {sorted(wanted)}\n{self.describe_run(dag_id, run_id)}"
                )
            return None

        return poll(
            f"run {dag_id}/{run_id} to be {sorted(wanted)}",
            check,
            timeout,
            interval=1,
            on_timeout=lambda: self.describe_run(dag_id, run_id),
        )

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str],
        timeout: float = 120,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Wait until a task instance is in one of ``states``; return it."""
        wanted = set(states)

        def check() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id, map_index)
            return ti if ti["state"] in wanted else None

        return poll(
            f"{dag_id}/{run_id}/{task_id}[{map_index}] to be {sorted(wanted)}",
            check,
            timeout,
            interval=0.5,
            on_timeout=lambda: self.describe_run(dag_id, run_id),
        )

    def wait_for_states(
        self,
        dag_id: str,
        run_id: str,
        want: Callable[[list[dict[str, Any]]], bool],
        what: str,
        timeout: float = 180,
    ) -> list[dict[str, Any]]:
        """Wait until ``want(task_instances)`` holds; return the task instances."""

        def check() -> list[dict[str, Any]] | None:
            tis = self.task_instances(dag_id, run_id)
            return tis if want(tis) else None

        return poll(what, check, timeout, interval=1, on_timeout=lambda: self.describe_run(dag_id, run_id))

    def patch_ti_state(self, dag_id: str, run_id: str, task_id: str, new_state: str, map_index: int = -1) -> Any:
        """Set a task instance's state through the REST API, as "Mark failed/success" in the UI does."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        return self.request("PATCH", path, json={"new_state": new_state})

    def task_log_entries(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """The task's log through the REST API: structured entries from the worker and the triggerer.

        Each entry has ``event`` (the message) and, for log records, ``logger``, ``level`` and
        ``timestamp``; the first entries name the files the api-server read (the triggerer's part
        is ``attempt=N.log.trigger.<triggerer job id>.log``).
        """
        params: dict[str, Any] = {"full_content": True}
        if map_index >= 0:
            params["map_index"] = map_index
        body = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params=params,
            headers={"Accept": "application/json"},
        )
        return [entry if isinstance(entry, dict) else {"event": str(entry)} for entry in body["content"]]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log through the REST API as text, one ``timestamp level [logger] message`` per line."""
        lines = []
        for entry in self.task_log_entries(dag_id, run_id, task_id, try_number, map_index):
            logger = f"[{entry['logger']}] " if entry.get("logger") else ""
            lines.append(f"{entry.get('timestamp', '')} {entry.get('level', '')} {logger}{entry.get('event', '')}".strip())
        return "\n".join(lines)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """An XCom value through the REST API."""
        params = {"map_index": map_index} if map_index >= 0 else {}
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.request("GET", path, params=params)["value"]

    def describe_run(self, dag_id: str, run_id: str) -> str:
        """The run's task states, for failure messages."""
        try:
            run = self.dag_run(dag_id, run_id)
            tis = self.task_instances(dag_id, run_id)
        except (DeploymentError, httpx.HTTPError) as exc:
            return f"(could not describe run {dag_id}/{run_id}: {exc})"
        states = sorted(f"{ti['task_id']}[{ti['map_index']}]={ti['state']}" for ti in tis)
        return f"run {dag_id}/{run_id} is {run['state']}; tasks: {', '.join(states)}"

    def airflow_jobs(self, job_type: str) -> list[dict[str, Any]]:
        """Airflow's own jobs of one type (``SchedulerJob``, ``TriggererJob``, ...), newest first."""
        jobs = self.request("GET", "/api/v2/jobs", params={"job_type": job_type, "order_by": "-id", "limit": 100})
        return list(jobs["jobs"])

    # -- the job service ---------------------------------------------------------------------
    def service_job(self, job_id: str) -> dict[str, Any]:
        """One job record from the local service (``GET /v1/jobs/{id}``)."""
        response = httpx.get(self.service.url(f"/v1/jobs/{job_id}"), headers=self.service.headers, timeout=30)
        if response.status_code != 200:
            raise DeploymentError(f"GET /v1/jobs/{job_id} answered {response.status_code}: {response.text[:500]}")
        return dict(response.json())

    def service_jobs(self, **filters: Any) -> list[dict[str, Any]]:
        """Jobs the local service holds (``GET /v1/jobs`` with filters, every page)."""
        found: list[dict[str, Any]] = []
        params = {"limit": 100, **filters}
        with httpx.Client(base_url=self.service.base_url, headers=self.service.headers, timeout=30) as client:
            while True:
                response = client.get("/v1/jobs", params=params)
                response.raise_for_status()
                page = response.json()
                found += page["jobs"]
                cursor = page.get("next_cursor")
                if not cursor:
                    return found
                params["cursor"] = cursor


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
