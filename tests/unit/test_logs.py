"""Remote logs in the task log: the follower and the final tail against scripted log sources.

Offsets are bytes of the remote log; the sources here serve raw bytes the way the services do
(the native API: a byte range decoded with U+FFFD for invalid bytes; Ray: the whole log as text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from jobservice_local.service import utf8_complete_length
from jobservice_provider.core.dialects import LogChunk, slice_log
from jobservice_provider.core.errors import TransientError
from jobservice_provider.core.logs import FollowStep, LogFollower

KiB = 1024
DIALECTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "dialects.md"


class RecordingLog:
    """Stands in for a logger: keeps what was logged, formatted, by level."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def _add(self, level: str, msg: str, *args: Any) -> None:
        self.records.append((level, msg % args if args else msg))

    def info(self, msg: str, *args: Any) -> None:
        self._add("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._add("warning", msg, *args)

    def debug(self, msg: str, *args: Any) -> None:
        self._add("debug", msg, *args)

    def copied(self, job_id: str = "j_1") -> list[str]:
        """The remote log lines copied into the task log, without their prefix."""
        prefix = f"[job {job_id}] "
        return [m.removeprefix(prefix) for level, m in self.records if level == "info" and m.startswith(prefix)]

    def warnings(self) -> list[str]:
        return [m for level, m in self.records if level == "warning"]

    def take(self) -> list[str]:
        copied = self.copied()
        self.records.clear()
        return copied


class NativeLog:
    """A remote log served like ``GET /v1/jobs/{id}/logs``: up to ``limit`` bytes from ``offset``,
    cut back to a whole UTF-8 character while the job runs, invalid bytes shown as U+FFFD."""

    def __init__(self, data: bytes = b"", *, limit: int = 64 * KiB, ended: bool = False) -> None:
        self.data, self.limit, self.ended = data, limit, ended
        self.asked: list[int] = []
        self.error: Exception | None = None

    def chunk(self, offset: int) -> LogChunk:
        self.asked.append(offset)
        if self.error is not None:
            raise self.error
        size = len(self.data)
        if offset >= size:
            return LogChunk("", offset, size, self.ended)
        piece = self.data[offset : offset + self.limit]
        if not (self.ended and offset + len(piece) >= size):
            piece = piece[: utf8_complete_length(piece)]
        end = offset + len(piece)
        return LogChunk(piece.decode("utf-8", errors="replace"), offset, end, self.ended and end >= size)

    async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> LogChunk:
        return self.chunk(offset)

    def get_logs_sync(self, job_id: str, offset: int = 0) -> LogChunk:
        return self.chunk(offset)


class WholeLog:
    """A service that only returns the whole log as text (Ray): offsets emulated by ``slice_log``."""

    def __init__(self, text: str, *, ended: bool = False) -> None:
        self.text, self.ended = text, ended

    async def get_logs(self, job_id: str, offset: int = 0, *, ended: bool | None = None) -> LogChunk:
        return slice_log(self.text, offset, complete=self.ended)


async def follow(source: Any, polls: int, offset: int = 0) -> tuple[LogFollower, RecordingLog, list[int]]:
    """Poll ``polls`` times; returns the follower, its log and the offset after each poll."""
    log = RecordingLog()
    follower = LogFollower(source, "j_1", offset, log)
    offsets = []
    for _ in range(polls):
        await follower.poll()
        offsets.append(follower.offset)
    return follower, log, offsets


# -- invalid UTF-8 ------------------------------------------------------------------------------
# 192 bytes with three invalid bytes: the log of the report in issue 11 (offset 198 on the old code).
INVALID = b"first line\n" + b"bad \xff byte\n" + b"lone \xc3 lead\n" + b"cut \x80 short\n" + b"x" * 145 + b"\n"


def test_the_reported_log_is_192_bytes_with_three_invalid_sequences() -> None:
    assert len(INVALID) == 192
    assert INVALID.decode("utf-8", errors="replace").count("\ufffd") == 3


async def test_invalid_utf8_is_shown_as_u_fffd_and_the_offset_is_the_remote_size() -> None:
    _follower, log, offsets = await follow(NativeLog(INVALID, ended=True), polls=2)
    assert log.copied() == ["first line", "bad \ufffd byte", "lone \ufffd lead", "cut \ufffd short", "x" * 145]
    assert offsets == [192, 192]  # never past the end (re-encoding the text would say 198)


async def test_a_partial_line_with_invalid_bytes_is_printed_rather_than_guessed() -> None:
    source = NativeLog(b"ok\nbad \xff")  # running: the last line is not finished
    follower, log, offsets = await follow(source, polls=1)
    # The unfinished "bad \xff" cannot be held back: its byte length is unknown from the text.
    assert log.take() == ["ok", "bad \ufffd"]
    assert offsets == [8]
    source.data += b" rest\nnext\n"
    await follower.poll()
    assert log.take() == [" rest", "next"]
    assert follower.offset == len(source.data) == 19


async def test_a_clean_partial_line_after_invalid_bytes_is_held_back_by_its_exact_size() -> None:
    source = NativeLog(b"a \xff\xfe b\nhalf a li")
    follower, log, offsets = await follow(source, polls=1)
    assert log.take() == ["a \ufffd\ufffd b"]
    assert offsets == [len(b"a \xff\xfe b\n")]  # 8: what the service says, less "half a li"
    source.data += b"ne\n"
    source.ended = True
    await follower.poll()
    assert log.take() == ["half a line"]
    assert follower.offset == len(source.data)


async def test_a_literal_u_fffd_in_a_valid_log_counts_its_three_bytes() -> None:
    data = "ok \ufffd\nhalf \ufffd".encode()  # valid UTF-8 that contains U+FFFD itself
    source = NativeLog(data)
    follower, log, offsets = await follow(source, polls=1)
    # The chunk's text re-encodes to exactly the bytes the service counted, so it is exact:
    # the unfinished line is held back by its size even though it holds a U+FFFD.
    assert log.take() == ["ok \ufffd"]
    assert offsets == [len("ok \ufffd\n".encode())]
    source.data += b"!\n"
    await follower.poll()
    assert log.take() == ["half \ufffd!"]
    assert follower.offset == len(source.data)


# -- long lines ---------------------------------------------------------------------------------
LONG = b"L" * 200_000  # one 200 KB line


async def test_a_200_kb_line_is_streamed_in_pieces_and_streaming_goes_on() -> None:
    from jobservice_provider.core.logs import MAX_LINE_BYTES

    source = NativeLog(b"before\n" + LONG + b"\nafter\n", ended=True)
    follower, log, offsets = await follow(source, polls=6)
    copied = log.copied()
    assert copied[0] == "before" and copied[-1] == "after"
    pieces = copied[1:-1]
    assert "".join(pieces) == LONG.decode()  # in full, in order, nothing twice
    assert all(len(p) <= MAX_LINE_BYTES for p in pieces)
    assert len(pieces) == -(-200_000 // MAX_LINE_BYTES)
    assert follower.offset == len(source.data) and offsets[-1] == offsets[-2]


async def test_a_long_line_still_being_written_is_printed_as_it_grows() -> None:
    from jobservice_provider.core.logs import MAX_LINE_BYTES

    source = NativeLog(LONG[:40_000])
    follower, log, offsets = await follow(source, polls=1)
    # Whole pieces go out at once; the unfinished remainder waits for the rest of the line.
    assert log.take() == ["L" * MAX_LINE_BYTES] * (40_000 // MAX_LINE_BYTES)
    assert offsets == [40_000 // MAX_LINE_BYTES * MAX_LINE_BYTES]
    source.data = LONG + b"\nnext\n"
    source.ended = True
    pieces = []
    for _ in range(5):
        await follower.poll()
        pieces += log.take()
    assert pieces[-1] == "next"
    assert "L" * (40_000 // MAX_LINE_BYTES * MAX_LINE_BYTES) + "".join(pieces[:-1]) == LONG.decode()
    assert follower.offset == len(source.data)


async def test_pieces_never_split_a_character() -> None:
    from jobservice_provider.core.logs import MAX_LINE_BYTES

    line = "é" * 20_000 + "😀" * 5_000  # 2-byte then 4-byte characters
    source = NativeLog((line + "\n").encode(), ended=True)
    follower, log, _ = await follow(source, polls=3)
    pieces = log.copied()
    assert "".join(pieces) == line
    assert all(len(p.encode()) <= MAX_LINE_BYTES for p in pieces)
    assert follower.offset == len(source.data)


# -- the per-poll cap ---------------------------------------------------------------------------
async def test_one_poll_prints_at_most_the_cap_and_the_rest_follows_on_later_polls() -> None:
    from jobservice_provider.core.logs import MAX_LOG_BYTES_PER_POLL

    lines = [f"line {i:05d} " + "z" * 90 for i in range(3_000)]  # 300 KB
    source = WholeLog("".join(line + "\n" for line in lines), ended=True)  # one chunk: the whole log
    _follower, log, offsets = await follow(source, polls=8)
    assert log.copied() == lines  # each once, in order
    assert offsets[-1] == len(source.text.encode())
    for before, after in zip([0, *offsets], offsets, strict=False):
        assert after - before <= MAX_LOG_BYTES_PER_POLL
    assert offsets[3] > offsets[2] > offsets[1] > offsets[0] > 0  # no poll stalls


async def test_the_cap_holds_on_a_whole_log_with_replacement_characters() -> None:
    from jobservice_provider.core.logs import MAX_LOG_BYTES_PER_POLL

    # Ray hands over text; its U+FFFD are characters of that text (three bytes each).
    text = "\ufffd start\n" + "".join(f"{i} \ufffd " + "y" * 100 + "\n" for i in range(2_000)) + "end \ufffd\n"
    source = WholeLog(text, ended=True)
    _follower, log, offsets = await follow(source, polls=6)
    assert log.copied() == text.splitlines()
    assert offsets[0] <= MAX_LOG_BYTES_PER_POLL and offsets[-1] == len(text.encode())


# -- growth, hand-over, failures ----------------------------------------------------------------
async def test_a_log_that_grows_between_polls_copies_each_line_once_with_exact_offsets() -> None:
    source = NativeLog(b"one\ntw")
    follower, log, offsets = await follow(source, polls=2)
    assert log.take() == ["one"] and offsets == [4, 4]
    source.data += "o\nthree é\nfo".encode()
    await follower.poll()
    assert log.take() == ["two", "three é"] and follower.offset == len(b"one\ntwo\nthree \xc3\xa9\n")
    source.data += b"ur\r\n"
    source.ended = True
    await follower.poll()
    assert log.take() == ["four"] and follower.offset == len(source.data)
    assert source.asked == [0, 4, 4, 17]


async def test_the_last_line_without_a_newline_is_printed_once_the_log_is_complete() -> None:
    _follower, log, offsets = await follow(NativeLog(b"a\nlast words", ended=True), polls=2)
    assert log.copied() == ["a", "last words"] and offsets == [12, 12]


async def test_a_log_shorter_than_the_offset_moves_the_offset_back_to_its_end() -> None:
    _follower, log, offsets = await follow(NativeLog(b"new\n"), polls=1, offset=500)
    assert offsets == [4] and log.copied() == []
    assert log.warnings() == ["Job j_1: its remote log is 4 bytes, shorter than the 500 already copied; copying from byte 4"]


async def test_a_source_that_fails_stops_following_without_raising() -> None:
    source = NativeLog(b"one\n")
    follower, log, _ = await follow(source, polls=1)
    source.error = TransientError("HTTP 503: down")
    source.data += b"two\n"
    for _ in range(3):
        await follower.poll()
    assert log.copied() == ["one"] and follower.offset == 4
    assert log.warnings() == ["Job j_1: not following its log any more: HTTP 503: down"]  # once
    assert source.asked == [0, 4]  # and not asked again


def test_the_whole_log_text_is_sliced_by_the_bytes_of_its_utf8_encoding() -> None:
    from jobservice_provider.core.dialects import DeclarativeDialect, RayDialect
    from jobservice_provider.core.http import HttpResponse

    text = "é \udcff\n"  # a lone surrogate: Ray's JSON may carry one (surrogateescape)
    body = json.dumps({"logs": text}).encode()
    whole = slice_log(RayDialect().parse_whole_log(HttpResponse(status=200, headers={}, body=body, url="")), 0, complete=False)
    assert whole == LogChunk("é \ufffd\n", 0, 7, False)  # shown as U+FFFD, counted as its 3 bytes
    assert slice_log(text, 3, complete=True) == LogChunk("\ufffd\n", 3, 7, True)
    assert slice_log(text, 1, complete=False).offset == 2  # inside "é": the next character
    assert slice_log(text, 99, complete=True) == LogChunk("", 7, 7, True)  # never past the end
    # The declarative dialect's whole-log spelling of Ray (docs/dialects.md) agrees.
    ray_spec = json.loads(re.search(r"<!-- spec:ray -->\s*```json\n(.*?)\n```", DIALECTS_DOC.read_text(), re.S)[1])
    declarative = DeclarativeDialect.from_options(ray_spec)
    assert declarative.parse_whole_log(HttpResponse(status=200, headers={}, body=body, url="")) == text


# -- the pure step ------------------------------------------------------------------------------
def test_a_poll_cap_smaller_than_a_piece_still_prints_one_piece_per_poll() -> None:
    from jobservice_provider.core.logs import follow_chunk

    chunk = LogChunk("aaaa\nbbbb\ncc", 10, 22, False)
    assert follow_chunk(chunk, 10, per_poll=3) == FollowStep(["aaaa"], 15)
    assert follow_chunk(chunk, 10, per_poll=10) == FollowStep(["aaaa", "bbbb"], 20)  # "cc" waits for its end
    assert follow_chunk(chunk, 10, per_poll=3, line_limit=4) == FollowStep(["aaaa"], 15)


def test_where_no_offset_is_known_the_chunk_is_printed_to_its_end() -> None:
    from jobservice_provider.core.logs import follow_chunk

    # Replaced bytes on both sides of where the cap falls: no exact place to stop before the end.
    chunk = LogChunk("\ufffd1\n2\n\ufffd3\n", 0, 7, False)
    assert follow_chunk(chunk, 0, per_poll=2) == FollowStep(["\ufffd1", "2", "\ufffd3"], 7)
    # A clean rest after the cap: stop there, counted back from next_offset.
    chunk = LogChunk("\ufffd1\n2\n3\n", 0, 7, False)
    assert follow_chunk(chunk, 0, per_poll=2) == FollowStep(["\ufffd1"], 3)


def test_a_line_ended_right_after_an_unfinished_piece_is_not_printed_again_as_empty() -> None:
    from jobservice_provider.core.logs import follow_chunk

    first = follow_chunk(LogChunk("x\ufffd", 0, 2, False), 0)
    assert first == FollowStep(["x\ufffd"], 2, midline=True)
    assert follow_chunk(LogChunk("\n\nend\n", 2, 8, True), 2, midline=True) == FollowStep(["", "end"], 8)
    assert follow_chunk(LogChunk("", 2, 2, False), 2, midline=True) == FollowStep([], 2, midline=True)


async def test_the_follower_remembers_it_is_inside_a_printed_line() -> None:
    source = NativeLog(b"half \xff")
    follower, log, _offsets = await follow(source, polls=1)
    source.data += b"\nnext\n"
    await follower.poll()
    assert log.copied() == ["half \ufffd", "next"] and follower.offset == len(source.data)


def test_lone_surrogates_are_shown_as_u_fffd_and_never_counted() -> None:
    from jobservice_provider.core.logs import follow_chunk

    chunk = LogChunk("a\udcff\nb", 0, 4, False)  # a native service's JSON with a lone surrogate
    assert follow_chunk(chunk, 0) == FollowStep(["a\ufffd"], 3)  # "b" is clean: held back by its size


# -- the final tail -----------------------------------------------------------------------------
def test_the_tail_joins_lines_across_reads_and_copies_only_the_last_ones() -> None:
    from jobservice_provider.core.logs import copy_log_tail

    source = NativeLog(b"".join(b"line %d\n" % i for i in range(10)) + b"no newline", limit=5, ended=True)
    log = RecordingLog()
    assert copy_log_tail(source.get_logs_sync, "j_1", 7, 3, log) == len(source.data)
    assert log.copied() == ["line 8", "line 9", "no newline"]
    assert next(m for _, m in log.records) == "Job j_1: 7 earlier remote log lines not copied; the last 3 follow"
    assert source.asked == list(range(7, len(source.data), 5))  # each byte read once, to the end


def test_the_tail_prints_long_lines_in_pieces_and_invalid_bytes_as_u_fffd() -> None:
    from jobservice_provider.core.logs import MAX_LINE_BYTES, copy_log_tail

    source = NativeLog(b"head\n" + LONG + b"\nbad \xff\r\nend", ended=True)
    log = RecordingLog()
    assert copy_log_tail(source.get_logs_sync, "j_1", 0, 100, log) == len(source.data)
    copied = log.copied()
    assert copied[0] == "head" and copied[-2:] == ["bad \ufffd", "end"]
    assert "".join(copied[1:-2]) == LONG.decode() and all(len(p) <= MAX_LINE_BYTES for p in copied[1:-2])
    assert len(copied) == 2 + 13 + 1 and log.warnings() == []


def test_a_tail_that_cannot_be_read_is_a_warning_and_what_was_read_is_still_copied() -> None:
    from jobservice_provider.core.logs import copy_log_tail

    class Failing(NativeLog):
        def chunk(self, offset: int) -> LogChunk:
            if offset:
                self.asked.append(offset)
                raise TransientError("HTTP 502: gone")
            return super().chunk(offset)

    source = Failing(b"one\ntwo\nthr" + b"ee\n", limit=11)
    log = RecordingLog()
    assert copy_log_tail(source.get_logs_sync, "j_1", 0, 100, log) == 11
    assert log.copied() == ["one", "two", "thr"]
    assert log.warnings() == ["Could not fetch the log of job j_1: HTTP 502: gone"]
    assert copy_log_tail(source.get_logs_sync, "j_1", 0, 0, log) == 0 and source.asked == [0, 11]  # 0 lines: no read


def test_the_operator_copies_its_tail_through_copy_log_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobservice_provider.core.logs import MAX_LINE_BYTES
    from jobservice_provider.operators.jobservice import SubmitAndWaitOperator

    source = NativeLog(b"x" * 100_000 + b"\n\xfe done\n", ended=True)
    op = SubmitAndWaitOperator(task_id="t", job_type="command", log_tail_lines=4)

    class Hook:
        log_settle = 0.0  # the service stores no lines after a job ended

        def get_logs(self, job_id: str, offset: int = 0, **_: Any) -> LogChunk:
            return source.chunk(offset)

    op.__dict__["hook"] = Hook()
    log = RecordingLog()
    monkeypatch.setattr(SubmitAndWaitOperator, "log", property(lambda self: log))
    op._copy_log_tail("j_1", 0)
    copied = log.copied()
    assert copied[-1] == "\ufffd done" and all(len(p) <= MAX_LINE_BYTES for p in copied) and len(copied) == 4
    source.error = TransientError("HTTP 503: down")
    op._copy_log_tail("j_1", 0)  # never fails the task
    assert log.warnings() == ["Could not fetch the log of job j_1: HTTP 503: down"]


# -- everything at once: random logs, growth, hand-over ------------------------------------------
def expect_lines(log_bytes: bytes, printed: list[str]) -> None:
    """Every line of the log is a run of consecutive printed items (whole, or its pieces), in order."""
    from jobservice_provider.core.logs import MAX_LINE_BYTES

    assert all(len(item.encode()) <= MAX_LINE_BYTES for item in printed)
    items = iter(printed)
    lines = log_bytes.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        got = next(items)
        while len(got) < len(line):
            got += next(items)
        assert got == line
    assert list(items) == []


@pytest.mark.parametrize("seed", range(60))
async def test_random_logs_growing_under_a_follower_then_a_tail_copy_each_line_once(seed: int) -> None:
    import random

    from jobservice_provider.core.logs import copy_log_tail

    rng = random.Random(seed)
    alphabet = [b"a", b"b", b" ", "é".encode(), "😀".encode(), b"\xff", b"\xfe", b"\x80"]
    lines = []
    for _ in range(rng.randint(0, 60)):
        length = rng.choice([0, 1, 5, 30, 200]) if rng.random() < 0.95 else rng.randint(16_000, 70_000)
        lines.append(b"".join(rng.choice(alphabet) for _ in range(length)))
    full = b"\n".join(lines) + rng.choice([b"\n", b""])
    source = NativeLog(limit=rng.choice([16 * KiB + 3, 64 * KiB, 1024 * KiB]))
    log = RecordingLog()
    follower = LogFollower(source, "j_1", 0, log)
    handover = rng.randint(0, 12)
    for _ in range(handover):
        source.data = full[: max(len(source.data), rng.randint(0, len(full)))]
        for _ in range(rng.randint(1, 2)):
            await follower.poll()
            assert follower.offset <= len(source.data)
    source.data, source.ended = full, True
    end = copy_log_tail(source.get_logs_sync, "j_1", follower.offset, 10**9, log)
    assert end == len(full)
    expect_lines(full, log.copied())


@pytest.fixture(autouse=True)
def _no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here may sleep: the sources answer at once."""
    import asyncio

    async def refuse(*_: object) -> None:
        raise AssertionError("a log test slept")

    monkeypatch.setattr(asyncio, "sleep", refuse)


class RecordLog:
    """A log kept as a list of records (Prefect's logs/filter), read in pages; lines may land after the job ended."""

    def __init__(self, records: list[str], *, page: int = 200, ended: bool = True) -> None:
        self.records, self.page, self.ended = records, page, ended
        self.asked: list[int] = []
        self.late: list[tuple[float, str]] = []  # (time, record): stored once the fake clock reaches it
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        while self.late and self.late[0][0] <= self.now:
            self.records.append(self.late.pop(0)[1])

    def get_logs_sync(self, job_id: str, offset: int = 0) -> LogChunk:
        self.asked.append(offset)
        page = self.records[offset : offset + self.page]
        data = "".join(record + "\n" for record in page)
        return LogChunk(data, offset, offset + len(page), self.ended and len(page) < self.page, records=True)


def test_the_tail_reads_on_until_the_log_settles_so_lines_stored_after_the_end_are_copied() -> None:
    """Prefect stores a run's last records 1-2 s after the run completed: without the settle they were lost."""
    from jobservice_provider.core.logs import copy_log_tail

    source = RecordLog([f"line {n}" for n in range(1, 251)])
    source.late = [(0.6 + (n - 251) * 0.01, f"line {n}") for n in range(251, 501)]  # stored 0.6-3.1 s after the end
    log = RecordingLog()
    assert copy_log_tail(source.get_logs_sync, "j_1", 0, 1000, log, settle=2.0, clock=source.clock, sleep=source.sleep) == 500
    assert log.copied() == [f"line {n}" for n in range(1, 501)]
    assert source.now >= 3.09 + 2.0  # it waited for the log to stop growing, then for the settle time
    assert source.now <= 3.09 + 2.0 + 0.5 + 0.5
    # Without a settle time the tail stops at the first complete read (the behaviour before issue 15).
    before = RecordLog([f"line {n}" for n in range(1, 251)])
    before.late = [(0.6, "line 251")]
    log = RecordingLog()
    assert copy_log_tail(before.get_logs_sync, "j_1", 0, 1000, log, clock=before.clock, sleep=before.sleep) == 250
    assert before.now == 0.0 and len(log.copied()) == 250


def test_settling_is_bounded_and_a_running_job_is_not_waited_for() -> None:
    from jobservice_provider.core.logs import SETTLE_LIMIT, copy_log_tail

    endless = RecordLog(["first"])
    endless.late = [(t * 0.1, f"more {t}") for t in range(1, 10_000)]  # never stops growing
    log = RecordingLog()
    copy_log_tail(endless.get_logs_sync, "j_1", 0, 10, log, settle=1.0, clock=endless.clock, sleep=endless.sleep)
    assert SETTLE_LIMIT * 1.0 <= endless.now <= SETTLE_LIMIT * 1.0 + 0.5
    running = RecordLog(["a", "b"], ended=False)  # never complete: read to the end, no settling
    running.late = [(0.5, "c")]
    log = RecordingLog()
    assert copy_log_tail(running.get_logs_sync, "j_1", 0, 10, log, settle=1.0, clock=running.clock, sleep=running.sleep) == 2
    assert running.now == 0.0 and log.copied() == ["a", "b"]


def test_a_page_of_records_is_followed_whole_with_offsets_counting_records() -> None:
    """Record offsets are no byte counts: cutting a page at the byte budget would compute a wrong next offset."""
    from jobservice_provider.core.logs import follow_chunk

    records = [f"record {n} " + "x" * 50 for n in range(200)] + ["two\nlines", "tab\tend\r"]
    chunk = LogChunk("".join(r + "\n" for r in records), 1000, 1202, False, records=True)
    step = follow_chunk(chunk, 1000, per_poll=64)
    assert step.offset == 1202 and not step.midline
    assert step.lines == [*records[:200], "two", "lines", "tab\tend"]
    assert follow_chunk(LogChunk("", 1202, 1202, True, records=True), 1202) == FollowStep([], 1202)
