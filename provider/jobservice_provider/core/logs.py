"""Remote logs in the task log: following them while a job runs, and the tail at the end.

Offsets count bytes of the remote log, or records where the service keeps its log as a list
of records (``LogChunk.records``: each record is one whole line, so a chunk never ends inside
one). The text a service returns is for display only: invalid UTF-8 in the log arrives as
U+FFFD, which stands for one to three bytes, so the length of re-encoded text is never trusted
as a byte count. What is certain is the service's ``next_offset``; a position inside a chunk
is known only where it can be counted back from there exactly (see :func:`follow_chunk`).
"""

from __future__ import annotations

import collections
import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from jobservice_provider.core.dialects import LogChunk
from jobservice_provider.core.errors import JobServiceError

# Remote log text printed per poll at most; the rest follows on later polls (or in the final tail).
MAX_LOG_BYTES_PER_POLL = 64 * 1024
# Longer lines are printed in pieces of at most this many UTF-8 bytes. 16 KiB is where Docker's
# log drivers split lines too, far below the per-record limits of remote task-log sinks
# (CloudWatch and Cloud Logging: 256 KiB), and small enough to read in the Airflow UI; a
# whole line waiting to complete could otherwise hold the log back without bound.
MAX_LINE_BYTES = 16 * 1024
# Reading a settling log (see copy_log_tail): at least this many seconds between reads, and at
# most SETTLE_LIMIT times the settle time in all.
SETTLE_MIN_POLL = 0.25
SETTLE_LIMIT = 10

# Characters whose bytes in the remote log are unknown: replaced invalid bytes, and lone
# surrogates (a JSON "\udcff", e.g. from surrogateescape), which no UTF-8 writer can print.
_UNCOUNTABLE = re.compile("[\ufffd\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class LogSource(Protocol):
    async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> LogChunk: ...


def display(text: str) -> str:
    """``text`` as it may be written to a task log: lone surrogates become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _pieces(text: str, start: int, stop: int, limit: int) -> Iterator[tuple[int, int]]:
    """``text[start:stop]`` as character ranges of at most ``limit`` UTF-8 bytes (one, if empty)."""
    if start == stop:
        yield start, stop
    while start < stop:
        window = text[start : min(stop, start + limit)]  # a character is at least one byte
        raw = window.encode("utf-8", "surrogatepass")
        if len(raw) > limit:
            cut = limit
            while raw[cut] & 0xC0 == 0x80:  # back to the start of a character
                cut -= 1
            window = raw[:cut].decode("utf-8", "surrogatepass")
        yield start, start + len(window)
        start += len(window)


def split_pieces(text: str, limit: int = MAX_LINE_BYTES) -> list[str]:
    """One line's text in pieces of at most ``limit`` UTF-8 bytes, never splitting a character."""
    return [text[a:b] for a, b in _pieces(text, 0, len(text), limit)]


@dataclasses.dataclass(frozen=True)
class FollowStep:
    """What one poll prints (whole lines, or pieces of longer ones) and where the next read starts.

    ``midline``: the next read starts inside a line whose start was printed up to that offset.
    """

    lines: list[str]
    offset: int
    midline: bool = False


def follow_chunk(
    chunk: LogChunk,
    offset: int,
    *,
    midline: bool = False,
    per_poll: int = MAX_LOG_BYTES_PER_POLL,
    line_limit: int = MAX_LINE_BYTES,
) -> FollowStep:
    """The lines of ``chunk`` (read from byte ``offset``) to print now, and the next offset.

    An unfinished last line is held back for the next read when its size in bytes is
    known, and printed otherwise. Printing stops after ``per_poll`` bytes at the first
    place whose offset is known; at least one piece is printed whenever there is one.

    The offset of a place in the chunk is known when the text after it can be counted
    back from ``next_offset``: it holds no U+FFFD or surrogate, or the whole chunk
    re-encodes to exactly the bytes the service counted (then no U+FFFD stood for fewer
    than its own three bytes, so every count inside is exact). The next offset is never
    past ``next_offset``, the end of the log as far as this chunk knows.

    :param midline: the previous step ended with ``midline``: an end of line right at
        ``offset`` ends the line printed then, so it is not printed as an empty line.
    """
    data, end = chunk.data, max(0, chunk.next_offset)
    if not data:
        return FollowStep([], end, midline and end >= offset)
    if chunk.records:
        # Whole records, one page of them: every line ends in the chunk, and a record count says
        # nothing about bytes, so the page is printed whole (a page is bounded by the service).
        pieces = [
            piece for line in data.removesuffix("\n").split("\n") for piece in split_pieces(line.removesuffix("\r"), line_limit)
        ]
        return FollowStep([display(piece) for piece in pieces], end)
    floor = min(offset, end)  # the offset never goes back over printed text, unless the log shrank
    exact = _utf8_size(data) == end - offset
    last_uncountable = -1
    if not exact:
        for match in _UNCOUNTABLE.finditer(data):
            last_uncountable = match.start()

    def offset_at(index: int) -> int | None:
        if exact:  # count from the start: the printed side is short, the rest may be a whole log
            return offset + _utf8_size(data[:index])
        if index <= last_uncountable:
            return None
        return max(floor, end - _utf8_size(data[index:]))

    lines: list[str] = []
    printed = 0
    index = 1 if midline and data.startswith("\n") else 0
    unfinished = False
    while index < len(data):
        newline = data.find("\n", index)
        stop = len(data) if newline < 0 else newline
        unfinished = newline < 0 and not chunk.complete
        for start, piece_end in _pieces(data, index, stop, line_limit):
            if unfinished and piece_end == stop and (held := offset_at(start)) is not None:
                return FollowStep(lines, held)
            ends_line = piece_end == stop and newline >= 0
            text = data[start:piece_end]
            size = _utf8_size(text) + ends_line  # what it moves the offset by, where known
            if lines and printed + size > per_poll and (stop_at := offset_at(start)) is not None:
                return FollowStep(lines, stop_at)
            lines.append(display(text.removesuffix("\r") if ends_line else text))
            printed += size
        index = stop + 1
    return FollowStep(lines, end, unfinished)


class LogFollower:
    """Copies new remote log lines into the task log while a wait runs, each once.

    Whole lines are printed; lines longer than ``MAX_LINE_BYTES`` in pieces as they arrive.
    ``offset`` is how many bytes of the remote log were copied: the final tail starts there.
    """

    def __init__(self, client: LogSource, job_id: str, offset: int, log: Any) -> None:
        self.client, self.job_id, self.log = client, job_id, log
        self.offset = max(0, offset)
        self.midline = False  # the last line printed is not finished (its size was unknown)
        self.failed = False

    async def poll(self, *, ended: bool | None = None) -> None:
        """Copy what the log gained. ``ended``: whether the job has ended, when the caller knows
        (a service that returns the whole log then needs no status lookup to tell)."""
        if self.failed:
            return
        try:
            chunk = await self.client.get_logs(self.job_id, self.offset, ended=ended)
        except JobServiceError as exc:
            # The log is a courtesy: losing it must never fail or stall the wait.
            self.failed = True
            self.log.warning("Job %s: not following its log any more: %s", self.job_id, exc)
            return
        if chunk.next_offset < self.offset:
            self.log.warning(
                "Job %s: its remote log is %d bytes, shorter than the %d already copied; copying from byte %d",
                self.job_id,
                chunk.next_offset,
                self.offset,
                max(0, chunk.next_offset),
            )
        step = follow_chunk(chunk, self.offset, midline=self.midline)
        for line in step.lines:
            self.log.info("[job %s] %s", self.job_id, line)
        self.offset, self.midline = step.offset, step.midline


def copy_log_tail(
    get_logs: Callable[[str, int], LogChunk],
    job_id: str,
    offset: int,
    max_lines: int,
    log: Any,
    *,
    line_limit: int = MAX_LINE_BYTES,
    settle: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
) -> int:
    """Print the last ``max_lines`` lines of the remote log from ``offset`` on; return where it ended.

    Reads to the end of the log (``complete``, or a read that gets no further), joining
    lines that span reads; longer lines count as their pieces. A failed read is a warning,
    never an error: what was read is still printed.

    :param get_logs: reads a chunk from an offset (the sync hook's ``get_logs``).
    :param settle: once the log is complete (the job ended and all was read), keep reading until
        it has not grown for this many seconds: some services store a job's last lines after it
        ended (Prefect ships them in batches, 1-2 s after the run completed). At most
        ``SETTLE_LIMIT`` times that in all, for a log that never stops growing, and never past
        ``deadline`` (in ``clock``'s time).
    """
    if max_lines <= 0:
        return offset
    shown: collections.deque[str] = collections.deque(maxlen=max_lines)
    seen = 0
    unfinished = ""  # the start of a line the next read continues; shorter than line_limit
    offset = max(0, offset)
    quiet_since: float | None = None  # the log was complete and has not grown since then
    settling_until = 0.0
    try:
        while True:
            chunk = get_logs(job_id, offset)
            *ended, unfinished = (unfinished + chunk.data).split("\n")
            for line in ended:
                pieces = split_pieces(line.removesuffix("\r"), line_limit)
                shown.extend(pieces)
                seen += len(pieces)
            *whole, unfinished = split_pieces(unfinished, line_limit)
            shown.extend(whole)
            seen += len(whole)
            read_to = max(0, chunk.next_offset)
            grew, offset = read_to > offset, read_to
            if grew and not chunk.complete:
                continue  # more to read now
            if settle <= 0 or (quiet_since is None and not chunk.complete):
                break  # the end, as far as anyone can tell (a job still running is not waited for)
            now = clock()
            if quiet_since is None:
                settling_until = now + settle * SETTLE_LIMIT if deadline is None else min(now + settle * SETTLE_LIMIT, deadline)
            if quiet_since is None or grew:
                quiet_since = now
            if now - quiet_since >= settle or now >= settling_until:
                break
            sleep(max(SETTLE_MIN_POLL, settle / 4))
    except JobServiceError as exc:
        log.warning("Could not fetch the log of job %s: %s", job_id, exc)
    if unfinished:
        shown.append(unfinished)
        seen += 1
    if seen > len(shown):
        log.info("Job %s: %d earlier remote log lines not copied; the last %d follow", job_id, seen - len(shown), len(shown))
    for line in shown:
        log.info("[job %s] %s", job_id, display(line))
    return offset
