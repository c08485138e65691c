"""How each job type runs: a timer for ``sleep``, a process group for ``python``/``command``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from jobservice_local.jobtypes import CommandSpec, PythonSpec, SleepSpec
from jobservice_local.models import JsonLimitError, dumps, loads
from jobservice_local.progress import MAX_MESSAGE_CHARS, PROGRESS_FD_ENV
from jobservice_local.status import JobStatus
from jobservice_local.store import private_file

log = logging.getLogger(__name__)

#: largest single message (e.g. a result) accepted from a python runner.
MAX_CONTROL_MESSAGE = 64 * 1024 * 1024
#: how long to keep reading the runner's pipe after its process exited.
CONTROL_DRAIN_TIMEOUT = 2.0

ProgressSink = Callable[[float, "float | None", "str | None"], None]


@dataclasses.dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a job's work ended on its own (a requested stop is decided by the service)."""

    status: JobStatus
    result_json: str | None = None
    error: dict[str, str] | None = None


class Execution(Protocol):
    """One running job."""

    #: ``True`` if stopping is immediate (no process to wait for).
    stops_at_once: bool

    async def run(self) -> RunOutcome:
        """Do the work and report how it ended."""
        ...

    def terminate(self, grace: float) -> None:
        """Ask the work to stop: SIGTERM now, SIGKILL after ``grace`` seconds."""
        ...


def append_log(path: Path, text: str) -> None:
    """Append ``text`` to a job log (O_APPEND, so it never clobbers a child's output)."""
    fd = private_file(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


class SleepExecution:
    """The ``sleep`` job: no process, one asyncio timer per step.

    :param spec: the validated params.
    :param on_progress: called after every step.
    :param log_path: the job's log file.
    """

    stops_at_once = True

    def __init__(self, spec: SleepSpec, on_progress: ProgressSink, log_path: Path) -> None:
        self.spec = spec
        self.on_progress = on_progress
        self.log_path = log_path

    async def run(self) -> RunOutcome:
        """Sleep ``seconds`` in ``steps`` equal steps, reporting each one."""
        loop = asyncio.get_running_loop()
        spec = self.spec
        started = loop.time()
        step_length = spec.seconds / spec.steps
        for step in range(1, spec.steps + 1):
            # Absolute targets, so that many steps do not accumulate timer lateness.
            await asyncio.sleep(max(0.0, started + step * step_length - loop.time()))
            append_log(self.log_path, f"step {step}/{spec.steps}\n")
            self.on_progress(step, spec.steps, f"step {step}/{spec.steps}")
        if spec.fail is not None:
            return RunOutcome(JobStatus.FAILED, error={"type": "SleepJobFailed", "message": spec.fail})
        return RunOutcome(JobStatus.SUCCEEDED, result_json=dumps(spec.result))

    def terminate(self, grace: float) -> None:
        """Nothing to signal: the service cancels the task that runs :meth:`run`."""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ProcessExecution:
    """A job run as a child process in its own process group, output to the job log.

    :param argv: the program and its arguments (never a shell string).
    :param env: the complete environment of the child.
    :param cwd: the working directory, or ``None`` for the service's.
    :param log_path: the job's log file (stdout and stderr both go there).
    :param describe_exit: turns a return code into the job's outcome.
    :param stdin_data: bytes written to the child's stdin (then closed), if any.
    :param on_progress: if given, a control pipe is passed to the child (python runner).
    :param on_spawn: called with the child's pid (its process group's id) once it exists.
    """

    stops_at_once = False

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        cwd: str | None,
        log_path: Path,
        describe_exit: Callable[[int, ProcessExecution], RunOutcome],
        *,
        stdin_data: bytes | None = None,
        on_progress: ProgressSink | None = None,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.describe_exit = describe_exit
        self.stdin_data = stdin_data
        self.on_progress = on_progress
        self.on_spawn = on_spawn
        self.pid: int | None = None
        self.result_json: str | None = None
        self.error: dict[str, str] | None = None
        self._grace: float | None = None
        self._kill_timer: asyncio.TimerHandle | None = None

    def _signal_group(self, signum: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def terminate(self, grace: float) -> None:
        """SIGTERM the process group now and SIGKILL it after ``grace`` seconds."""
        if self._grace is not None:
            return
        self._grace = grace
        if self.pid is not None:
            self._start_termination()

    def _start_termination(self) -> None:
        assert self._grace is not None
        self._signal_group(signal.SIGTERM)
        self._kill_timer = asyncio.get_running_loop().call_later(self._grace, self._signal_group, signal.SIGKILL)

    async def _spawn(self, env: dict[str, str], control_write: int) -> asyncio.subprocess.Process | RunOutcome:
        if self.cwd is not None and not os.path.isdir(self.cwd):
            return self._spawn_failed("InvalidCwd", f"working directory does not exist: {self.cwd!r}")
        with os.fdopen(private_file(self.log_path, os.O_WRONLY | os.O_APPEND), "ab") as log_file:
            try:
                return await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.PIPE if self.stdin_data is not None else asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=self.cwd,
                    env=env,
                    start_new_session=True,
                    pass_fds=(control_write,) if control_write >= 0 else (),
                )
            except FileNotFoundError:
                return self._spawn_failed("ExecutableNotFound", f"executable not found: {self.argv[0]!r}")
            except PermissionError as exc:
                return self._spawn_failed("PermissionDenied", f"cannot execute {self.argv[0]!r}: {exc.strerror}")
            except OSError as exc:
                return self._spawn_failed("SpawnFailed", f"cannot start {self.argv[0]!r}: {exc}")

    async def run(self) -> RunOutcome:
        """Start the process, wait for it to exit and describe how it ended."""
        loop = asyncio.get_running_loop()
        env = dict(self.env)
        control_read = control_write = -1
        if self.on_progress is not None:
            control_read, control_write = os.pipe()
            env[PROGRESS_FD_ENV] = str(control_write)
        try:
            proc = await self._spawn(env, control_write)
        except BaseException:
            if control_read >= 0:
                os.close(control_read)
            raise
        finally:
            if control_write >= 0:
                os.close(control_write)
        if isinstance(proc, RunOutcome):
            if control_read >= 0:
                os.close(control_read)
            return proc

        self.pid = proc.pid
        if self.on_spawn is not None:
            self.on_spawn(proc.pid)
        if self._grace is not None:
            self._start_termination()
        control_task: asyncio.Task[None] | None = None
        transport: asyncio.ReadTransport | None = None
        if control_read >= 0:
            reader = asyncio.StreamReader(limit=MAX_CONTROL_MESSAGE)
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(control_read, "rb", buffering=0)
            )
            control_task = asyncio.create_task(self._read_control(reader))
        try:
            if self.stdin_data is not None and proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    proc.stdin.write(self.stdin_data)
                    await proc.stdin.drain()
                proc.stdin.close()
            returncode = await proc.wait()
            if self._grace is not None:
                # The leader is gone; do not leave its group behind after a stop.
                self._signal_group(signal.SIGKILL)
            if control_task is not None:
                # EOF comes when the runner exits, unless a forked grandchild kept the pipe.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CONTROL_DRAIN_TIMEOUT):  # not wait_for: it can swallow a cancel on 3.11
                        await asyncio.shield(control_task)
            return self.describe_exit(returncode, self)
        except BaseException:
            if proc.returncode is None:
                self._signal_group(signal.SIGKILL)
            raise
        finally:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            if control_task is not None and not control_task.done():
                control_task.cancel()
            if transport is not None:
                transport.close()

    def _spawn_failed(self, error_type: str, message: str) -> RunOutcome:
        append_log(self.log_path, f"jobservice-local: {message}\n")
        return RunOutcome(JobStatus.FAILED, error={"type": error_type, "message": message})

    async def _read_control(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:
                self.error = {
                    "type": "ResultTooLarge",
                    "message": f"a message from the job exceeded {MAX_CONTROL_MESSAGE} bytes",
                }
                return
            if not line:
                return
            try:
                message = loads(line)
            except JsonLimitError as exc:
                self.error = {"type": "MessageBeyondLimits", "message": f"a message from the job is beyond a limit: {exc}"}
                continue
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            self._handle_control(message)

    def _handle_control(self, message: dict[str, Any]) -> None:
        if "progress" in message and self.on_progress is not None:
            progress = message["progress"]
            if not isinstance(progress, dict):
                return
            completed, total, text = progress.get("completed"), progress.get("total"), progress.get("message")
            if isinstance(completed, bool) or not isinstance(completed, (int, float)):
                return
            if total is not None and (isinstance(total, bool) or not isinstance(total, (int, float))):
                return
            if text is not None and not isinstance(text, str):
                return
            self.on_progress(completed, total, text[:MAX_MESSAGE_CHARS] if text is not None else None)
        elif "result" in message:
            self.result_json = dumps(message["result"])
        elif "error" in message and isinstance(message["error"], dict):
            error = message["error"]
            self.error = {"type": str(error.get("type", "Error")), "message": str(error.get("message", ""))}


def python_execution(
    spec: PythonSpec,
    env: Mapping[str, str],
    log_path: Path,
    on_progress: ProgressSink,
    on_spawn: Callable[[int], None] | None = None,
) -> ProcessExecution:
    """A ``python`` job: ``pyrunner`` in a subprocess, the call spec on its stdin."""
    payload = dumps({"callable": spec.callable, "args": spec.args, "kwargs": spec.kwargs}).encode("utf-8")
    return ProcessExecution(
        [sys.executable, "-m", "jobservice_local.pyrunner"],
        {**env, "PYTHONUNBUFFERED": "1"},
        None,
        log_path,
        _describe_python_exit,
        stdin_data=payload,
        on_progress=on_progress,
        on_spawn=on_spawn,
    )


def _describe_python_exit(returncode: int, execution: ProcessExecution) -> RunOutcome:
    if returncode == 0 and execution.result_json is not None:
        return RunOutcome(JobStatus.SUCCEEDED, result_json=execution.result_json)
    if execution.error is not None:
        return RunOutcome(JobStatus.FAILED, error=execution.error)
    if returncode < 0:
        message = f"python runner was killed by {_signal_name(-returncode)}"
        return RunOutcome(JobStatus.FAILED, error={"type": "Killed", "message": message})
    message = f"python runner exited with code {returncode} without reporting a result"
    return RunOutcome(JobStatus.FAILED, error={"type": "RunnerExited", "message": message})


def command_execution(
    spec: CommandSpec, env: Mapping[str, str], log_path: Path, on_spawn: Callable[[int], None] | None = None
) -> ProcessExecution:
    """A ``command`` job: ``argv`` executed directly (no shell)."""
    return ProcessExecution(spec.argv, {**env, **spec.env}, spec.cwd, log_path, _describe_command_exit, on_spawn=on_spawn)


def _describe_command_exit(returncode: int, execution: ProcessExecution) -> RunOutcome:
    if returncode == 0:
        return RunOutcome(JobStatus.SUCCEEDED, result_json=dumps({"returncode": 0}))
    message = f"command exited with code {returncode}"
    if returncode < 0:
        message += f" (killed by {_signal_name(-returncode)})"
    return RunOutcome(JobStatus.FAILED, error={"type": "NonZeroExit", "message": message})
