"""Runs one ``python`` job in its own process: ``python -m jobservice_local.pyrunner``.

Reads ``{"callable": "pkg.module:function", "args": [...], "kwargs": {...}}`` from
stdin, calls the function (awaiting it if it is a coroutine function) and sends
its return value (or the exception) to the service over the pipe named by
``JOBSERVICE_PROGRESS_FD`` (see :mod:`jobservice_local.progress`).
The function's stdout and stderr, and the traceback of a failure, go to the job log.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import traceback
from typing import Any

from jobservice_local import progress


def _resolve(target: str) -> Any:
    module_name, _, attribute_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        obj = getattr(obj, attribute)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj


def _take_channel() -> None:
    raw = os.environ.pop(progress.PROGRESS_FD_ENV, None)
    fd: int | None = None
    if raw:
        fd = int(raw)
        # Children of the job must not inherit the channel (their fd numbers differ).
        os.set_inheritable(fd, False)
    progress.configure(fd)


def main() -> int:
    """Run the job described on stdin; return the process exit code."""
    _take_channel()
    spec = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the function must not see the spec pipe
    # The job's own modules are found relative to where the service runs it.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        function = _resolve(spec["callable"])
        value = function(*spec.get("args", []), **spec.get("kwargs", {}))
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the job's return value is not JSON-serializable: {exc}") from exc
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.flush()
        progress.send({"error": {"type": type(exc).__name__, "message": str(exc)}})
        return 1
    sys.stdout.flush()
    if not progress.send({"result": value}):
        sys.stderr.write("jobservice-local: could not send the result to the service\n")
        return 1
    return 0


async def _await(awaitable: Any) -> Any:
    return await awaitable


if __name__ == "__main__":
    sys.exit(main())
