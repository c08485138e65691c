"""Remote logs that stay correct: real ``command`` jobs on the local service writing invalid
UTF-8 and a 200 KB line, followed by the hook's wait, the trigger and the operator.

Each job writes known bytes; the remote log's size is asked of the service (a read from past
the end answers with it), and every line must reach the task log exactly once, in order.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from tests.support.airflow_context import make_context

from jobservice_provider.core.dialects import SubmitRequest
from jobservice_provider.core.logs import MAX_LINE_BYTES
from jobservice_provider.core.policy import PollPolicy
from jobservice_provider.core.wait import WaitSpec
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import SubmitAndWaitOperator
from jobservice_provider.triggers.jobservice import JobStatusTrigger

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("jobservice_conn")]

# Each script writes its bytes in steps with pauses, so polls see lines before they end.
INVALID_SCRIPT = r"""
import sys, time
out = sys.stdout.buffer
for part in [b"first line\n", b"bad \xff byte\n", b"lone \xc3 lead\nhalf ", b"cont \x80 inu", b"ation \xfe\n",
             b"trunc \xe2\x82", b"\n", "ok é 😀\n".encode(), b"no newline at the end \xff"]:
    out.write(part); out.flush(); time.sleep(0.25)
"""
INVALID_BYTES = (
    b"first line\nbad \xff byte\nlone \xc3 lead\nhalf cont \x80 inuation \xfe\ntrunc \xe2\x82\n"
    + "ok é 😀\n".encode()
    + b"no newline at the end \xff"
)
LONG_LINE = b"L" * 200_000
LONG_SCRIPT = r"""
import sys, time
out = sys.stdout.buffer
out.write(b"start\n"); out.flush()
for _ in range(25):
    out.write(b"L" * 8000); out.flush(); time.sleep(0.12)
out.write(b"\nend\n")
"""
LONG_BYTES = b"start\n" + LONG_LINE + b"\nend\n"
# 10,000 lines at the very end: far more than one poll prints, so the final tail has work.
BURST_SCRIPT = r"""
import sys, time
out = sys.stdout.buffer
out.write(b"before\n"); out.flush(); time.sleep(0.5)
out.write(b"".join(b"burst %05d \xff " % i + b"b" * 88 + b"\n" for i in range(10000)))
"""
BURST_BYTES = b"before\n" + b"".join(b"burst %05d \xff " % i + b"b" * 88 + b"\n" for i in range(10_000))


class RecordingLog:
    """Stands in for the hook's, trigger's and operator's loggers: keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        if level not in ("debug", "info", "warning", "error", "exception", "critical"):
            raise AttributeError(level)

        def record(msg: str, *args: Any, **_: Any) -> None:
            self.messages.append((level, msg % args if args else msg))

        return record

    def copied(self, job_id: str) -> list[str]:
        prefix = f"[job {job_id}] "
        return [m.removeprefix(prefix) for level, m in self.messages if level == "info" and m.startswith(prefix)]


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recording = RecordingLog()
    for cls in (JobServiceHook, JobStatusTrigger, SubmitAndWaitOperator):
        monkeypatch.setattr(cls, "log", property(lambda self: recording))
    return recording


def submit(script: str) -> str:
    return JobServiceHook().submit(SubmitRequest("command", {"argv": [sys.executable, "-c", script]})).id


def remote_size(job_id: str) -> int:
    """The size of the job's remote log in bytes, as the service counts it."""
    return JobServiceHook().get_logs(job_id, 1 << 40).next_offset


def assert_each_line_once(written: bytes, copied: list[str]) -> None:
    """Every line written is a run of consecutive copied items (the whole line, or its pieces), in order."""
    assert all(len(item.encode()) <= MAX_LINE_BYTES for item in copied)
    items = iter(copied)
    lines = written.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        got = next(items)
        while len(got) < len(line):
            got += next(items)
        assert got == line
    assert list(items) == []  # nothing twice, nothing made up


def test_hook_wait_copies_invalid_utf8_once_and_ends_at_the_log_size(log: RecordingLog) -> None:
    job_id = submit(INVALID_SCRIPT)
    result = JobServiceHook().wait_for_job(
        WaitSpec(job_id=job_id, poll=PollPolicy(interval=0.1), follow_logs=True), check_now=True
    )
    assert result.outcome.value == "success"
    assert remote_size(job_id) == len(INVALID_BYTES) == result.log_offset  # never past the end
    copied = log.copied(job_id)
    assert_each_line_once(INVALID_BYTES, copied)
    assert "bad \ufffd byte" in copied and copied[-1] == "no newline at the end \ufffd"


def test_hook_wait_streams_a_200_kb_line_in_pieces(log: RecordingLog) -> None:
    job_id = submit(LONG_SCRIPT)
    result = JobServiceHook().wait_for_job(
        WaitSpec(job_id=job_id, poll=PollPolicy(interval=0.1), follow_logs=True), check_now=True
    )
    assert result.outcome.value == "success"
    assert result.log_offset == remote_size(job_id) == len(LONG_BYTES)
    copied = log.copied(job_id)
    assert copied[0] == "start" and copied[-1] == "end"
    assert "".join(copied[1:-1]) == LONG_LINE.decode()  # in full, in pieces of at most 16 KiB
    assert len(copied[1:-1]) >= -(-len(LONG_LINE) // MAX_LINE_BYTES)
    assert_each_line_once(LONG_BYTES, copied)


@pytest.mark.parametrize(("script", "written"), [(INVALID_SCRIPT, INVALID_BYTES), (LONG_SCRIPT, LONG_BYTES)])
def test_trigger_in_an_event_loop_copies_each_line_once_and_ends_at_the_log_size(
    log: RecordingLog, script: str, written: bytes
) -> None:
    job_id = submit(script)
    trigger = JobStatusTrigger(job_id=job_id, poll_policy={"interval": 0.1}, follow_logs=True)
    _, kwargs = trigger.serialize()

    async def first_event() -> dict[str, Any]:
        return (await anext(JobStatusTrigger(**kwargs).run())).payload

    event = asyncio.run(first_event())
    assert event["status"] == "success"
    assert event["log_offset"] == remote_size(job_id) == len(written)
    assert_each_line_once(written, log.copied(job_id))


@pytest.mark.parametrize(("script", "written"), [(INVALID_SCRIPT, INVALID_BYTES), (LONG_SCRIPT, LONG_BYTES)])
def test_operator_on_the_worker_copies_each_line_once(log: RecordingLog, script: str, written: bytes) -> None:
    op = SubmitAndWaitOperator(
        task_id="t",
        job_type="command",
        job_params={"argv": [sys.executable, "-c", script]},
        poll_interval=0.1,
        deferrable=False,
        log_tail_lines=1_000,
    )
    context = make_context()
    assert op.execute(context) == {"returncode": 0}
    assert_each_line_once(written, log.copied(context["ti"].xcom["job_id"]))


def test_deferred_operator_hands_over_at_log_offset_and_the_tail_copies_the_rest(log: RecordingLog) -> None:
    op = SubmitAndWaitOperator(
        task_id="t",
        job_type="command",
        job_params={"argv": [sys.executable, "-c", BURST_SCRIPT]},
        poll_interval=0.1,
        log_tail_lines=100_000,
    )
    op.deferrable = True
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    _, kwargs = deferred.value.trigger.serialize()

    async def first_event() -> dict[str, Any]:
        return (await anext(JobStatusTrigger(**kwargs).run())).payload

    event = asyncio.run(first_event())
    job_id = context["ti"].xcom["job_id"]
    size = remote_size(job_id)
    assert size == len(BURST_BYTES)
    # The trigger copied part of the burst (one poll's worth after the job ended); the rest is the tail's.
    assert 0 < event["log_offset"] < size
    from_trigger = len(log.copied(job_id))
    assert op.execute_complete(context, event) == {"returncode": 0}
    copied = log.copied(job_id)
    assert 0 < from_trigger < len(copied)
    assert_each_line_once(BURST_BYTES, copied)
