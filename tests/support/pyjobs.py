"""Functions run as ``python`` jobs by the local service in tests (``tests.support.pyjobs:...``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jobservice_local import report_progress


def count_to(n: int, label: str = "counted") -> dict[str, Any]:
    """Report progress ``1..n``, print one line per step and return a summary."""
    for i in range(1, n + 1):
        report_progress(i, total=n, message=f"{label} {i}")
        print(f"{label} {i}/{n}", flush=True)
    return {"counted": n, "label": label}


def wait_for_file(path: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """Report 1/2, wait until ``path`` exists (the test creates it), report 2/2 and return."""
    report_progress(1, total=2, message="waiting for the go signal")
    deadline = time.monotonic() + timeout_s
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s}s")
        time.sleep(0.02)
    report_progress(2, total=2, message="done")
    return {"saw": path}


def fail(message: str) -> None:
    """Raise ``ValueError(message)``."""
    print("about to fail", flush=True)
    raise ValueError(message)


async def async_double(x: int) -> int:
    """A coroutine function: the runner awaits it."""
    return 2 * x


def fail_first_time(marker: str) -> dict[str, Any]:
    """Fail while ``marker`` does not exist (creating it), succeed afterwards: a flaky job."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("first run fails on purpose")
    return {"ok": True}
