"""Start the local job service as a real subprocess (for demos and tests of its clients).

Usage::

    with LocalServiceProcess(tmp_path, extra_args=["--allow-command"]) as svc:
        requests.get(f"{svc.base_url}/v1/health", headers=svc.headers)
"""

from __future__ import annotations

import base64
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

LISTENING = re.compile(r"^jobservice-local listening on (http://(?P<host>[^\s]+):(?P<port>\d+))\s*$")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class LocalServiceError(RuntimeError):
    """The service did not start or stop as expected."""


class LocalServiceProcess:
    """One ``jobservice-local serve`` subprocess bound to 127.0.0.1.

    :param workdir: where the database (``jobservice-local.db``), job logs and the
        service's stderr (``jobservice-local.stderr.log``) go; also its cwd.
    :param token: the bearer token (a random one by default); ``None`` starts the
        service with ``--no-auth``.
    :param extra_args: more ``serve`` options, e.g. ``["--allow-python"]``.
    :param pythonpath: directories put first on the service's ``PYTHONPATH``, so that
        ``python`` jobs can name code from them.
    """

    def __init__(
        self,
        workdir: Path,
        token: str | None = "",
        extra_args: Sequence[str] = (),
        pythonpath: Sequence[Path] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.token = token if token != "" else secrets.token_urlsafe(24)
        self.extra_args = list(extra_args)
        self.pythonpath = [str(p) for p in pythonpath]
        self.db_path = self.workdir / "jobservice-local.db"
        self.stderr_path = self.workdir / "jobservice-local.stderr.log"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running service."""
        if self.port is None:
            raise LocalServiceError("the service has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """The header that carries the token, as ``--auth-scheme`` in ``extra_args`` says (empty with ``--no-auth``)."""
        if self.token is None:
            return {}
        scheme = self._option("--auth-scheme") or "bearer"
        if scheme == "basic":
            credentials = base64.b64encode(f"{self._option('--basic-user')}:{self.token}".encode()).decode("ascii")
            return {"Authorization": f"Basic {credentials}"}
        if scheme == "header":
            return {self._option("--auth-header") or "X-API-Key": self.token}
        return {"Authorization": f"Bearer {self.token}"}

    def _option(self, name: str) -> str | None:
        args = self.extra_args
        return args[args.index(name) + 1] if name in args[:-1] else None

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (e.g. ``/v1/health``)."""
        return self.base_url + path

    def command(self) -> list[str]:
        """The command line that starts the service (the token travels in the environment, never here)."""
        auth = [] if self.token is not None else ["--no-auth"]
        return [
            sys.executable,
            "-m",
            "jobservice_local",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port or 0),
            "--db",
            str(self.db_path),
            *auth,
            *self.extra_args,
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("JOBSERVICE_TOKEN", None)
        if self.token is not None:
            # The service reads it and starts itself again without it, so that its jobs cannot.
            env["JOBSERVICE_TOKEN"] = self.token
        paths = [*self.pythonpath, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def stderr_text(self) -> str:
        """Everything the service wrote to stderr so far."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> LocalServiceProcess:
        """Start the service and wait (up to 30 s) until it listens."""
        if self.process is not None and self.process.poll() is None:
            raise LocalServiceError("the service is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "ab") as stderr:
            process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=self.workdir,
                env=self._env(),
            )
        self.process = process
        lines: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            # Keep draining stdout so the service can never block on a full pipe.
            for raw in stdout:
                lines.put(raw.decode("utf-8", "replace"))
            lines.put(None)

        self._reader = threading.Thread(target=pump, name="jobservice-local stdout", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                self._kill()
                raise LocalServiceError(
                    f"jobservice-local did not report listening within {START_TIMEOUT:g}s; stderr:\n{self.stderr_text()}"
                ) from None
            if line is None:
                code = process.wait()
                raise LocalServiceError(
                    f"jobservice-local exited with code {code} before listening; stderr:\n{self.stderr_text()}"
                )
            match = LISTENING.match(line)
            if match:
                self.port = int(match.group("port"))
                return self

    @property
    def pid(self) -> int:
        """The service's process id."""
        if self.process is None:
            raise LocalServiceError("the service has not been started")
        return self.process.pid

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def kill(self) -> int | None:
        """SIGKILL the service, as a crash would end it (no shutdown at all); return its exit code."""
        self._kill()
        return self.stop()

    def stop(self) -> int | None:
        """SIGTERM the service and wait for it (SIGKILL after 20 s); return its exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def restart(self) -> LocalServiceProcess:
        """Stop the service and start it again on the same port and database."""
        self.stop()
        return self.start()

    def __enter__(self) -> LocalServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
