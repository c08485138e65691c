"""Progress reporting from inside a ``python`` job of the embedded local job service.

The service starts each ``python`` job in a runner subprocess and hands it the
write end of a pipe (its descriptor number travels in ``JOBSERVICE_PROGRESS_FD``).
The runner and :func:`report_progress` send one JSON object per line on it:

* ``{"progress": {"completed": c, "total": t, "message": m}}``
* ``{"result": <json>}`` (runner only, once, when the function returned)
* ``{"error": {"type": <class name>, "message": <str>}}`` (runner only, once)

This module is imported inside user code, so it uses the standard library only.
"""

from __future__ import annotations

import json
import math
import os
import threading
from typing import Any

PROGRESS_FD_ENV = "JOBSERVICE_PROGRESS_FD"
JOB_ID_ENV = "JOBSERVICE_JOB_ID"
MAX_MESSAGE_CHARS = 1000

_lock = threading.Lock()
_fd: int | None = None
_configured = False


def configure(fd: int | None) -> None:
    """Use ``fd`` as the channel to the service (``None`` turns reporting off).

    Called by the runner, which also removes the environment variable so that
    grandchild processes never write to a descriptor number that means something
    else in them.
    """
    global _fd, _configured
    with _lock:
        _fd = fd
        _configured = True


def _channel() -> int | None:
    global _fd, _configured
    if not _configured:
        raw = os.environ.get(PROGRESS_FD_ENV)
        try:
            _fd = int(raw) if raw else None
        except ValueError:
            _fd = None
        _configured = True
    return _fd


def send(message: dict[str, Any]) -> bool:
    """Write one protocol message; return ``False`` when there is no service to talk to."""
    fd = _channel()
    if fd is None:
        return False
    data = (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
    # One lock so that messages from several threads never interleave on the pipe
    # (writes above PIPE_BUF are not atomic).
    with _lock:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError:
            return False
    return True


def _check_number(name: str, value: object, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")


def report_progress(completed: float, total: float | None = None, message: str | None = None) -> bool:
    """Report the progress of the running ``python`` job to the local job service.

    Call it from the job's function (or any thread of its process) as often as
    you like; the job record's ``progress`` becomes
    ``{"completed": completed, "total": total, "message": message}``.

    :param completed: units of work done so far (int or float).
    :param total: total units of work, or ``None`` if unknown.
    :param message: a short human-readable status line (cut to 1000 characters).
    :return: ``True`` if the report reached the service, ``False`` when the code
        is not running as a job of the local service (the call is then a no-op).
    """
    _check_number("completed", completed, allow_none=False)
    _check_number("total", total, allow_none=True)
    if message is not None:
        if not isinstance(message, str):
            raise TypeError(f"message must be a string or None, got {type(message).__name__}")
        message = message[:MAX_MESSAGE_CHARS]
    return send({"progress": {"completed": completed, "total": total, "message": message}})
