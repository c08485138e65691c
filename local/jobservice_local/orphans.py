"""Process groups left behind by a crashed service: recognising them safely and stopping them.

Every ``python``/``command`` job runs as the leader of its own process group (and session), so
its id is the group's id. The service records it, with a marker of when the leader started,
as soon as the job's process exists. After a crash (``kill -9``, power cut of the service
alone) the next start finds those groups still running, orphaned; it stops them before it
marks their jobs failed, so a retry never runs beside a copy nobody watches.

A recorded id is only acted on when it is provably still the job's group:

* the leader still lives and started at the recorded moment (same boot, same start time); or
* the leader is gone but the group still has members, on the same boot: a process-group id is
  never handed out again while any process still belongs to that group.

Otherwise (another boot, a reused id, a platform where it cannot be told) nothing is signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

PROC = Path("/proc")
BOOT_ID = PROC / "sys" / "kernel" / "random" / "boot_id"
POLL_INTERVAL = 0.05
#: how long to wait for a group to vanish after SIGKILL before giving up on it.
KILL_WAIT = 2.0


def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3, the state, first)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def start_marker(pid: int) -> str | None:
    """When process ``pid`` started, as text that differs for any other process that ever had this id."""
    if sys.platform.startswith("linux"):
        fields, boot = _proc_stat(pid), _boot_id()
        if fields is None or boot is None or len(fields) < 20:
            return None
        return f"linux:{boot}:{fields[19]}"  # field 22: start time in clock ticks since boot
    try:
        done = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    started = done.stdout.strip()
    return f"ps:{started}" if done.returncode == 0 and started else None


def group_alive(pgid: int) -> bool:
    """Whether any process (not a zombie) still belongs to process group ``pgid``."""
    if sys.platform.startswith("linux") and PROC.is_dir():
        for entry in PROC.iterdir():
            if not entry.name.isdigit():
                continue
            fields = _proc_stat(int(entry.name))
            if fields is not None and len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours to stop
    return True


def is_our_group(pgid: int, marker: str | None) -> bool:
    """Whether ``pgid`` is provably still the group whose leader had start ``marker`` (see the module doc)."""
    if marker is None or pgid <= 1:
        return False
    current = start_marker(pgid)
    if current is not None:
        return current == marker
    boot = _boot_id()
    if not (marker.startswith("linux:") and boot is not None and marker.split(":")[1] == boot):
        return False
    return group_alive(pgid)


@dataclasses.dataclass(frozen=True)
class Stopped:
    """How stopping one group ended: ``"SIGTERM"``, ``"SIGKILL"`` or ``"still alive"``."""

    pgid: int
    by: str


async def stop_groups(
    pgids: Sequence[int],
    grace: float,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] | None = None,
) -> list[Stopped]:
    """SIGTERM every group now, SIGKILL those alive after ``grace`` seconds; wait until they are gone."""
    now = clock or asyncio.get_running_loop().time
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    how = dict.fromkeys(pgids, "SIGTERM")
    alive = [pgid for pgid in pgids if group_alive(pgid)]
    deadline = now() + grace
    while alive and now() < deadline:
        await sleep(POLL_INTERVAL)
        alive = [pgid for pgid in alive if group_alive(pgid)]
    for pgid in alive:
        how[pgid] = "SIGKILL"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = now() + KILL_WAIT
    while alive and now() < deadline:
        await sleep(POLL_INTERVAL)
        alive = [pgid for pgid in alive if group_alive(pgid)]
    for pgid in alive:
        how[pgid] = "still alive"
    return [Stopped(pgid, how[pgid]) for pgid in pgids]
