"""Remote logs in the task log: following them while a job runs, and the tail at the end."""

from __future__ import annotations

from typing import Any, Protocol

from jobservice_provider.core.dialects import LogChunk
from jobservice_provider.core.errors import JobServiceError

# Remote log text printed per poll at most; the rest follows on later polls (or in the final tail).
MAX_LOG_BYTES_PER_POLL = 64 * 1024


class LogSource(Protocol):
    async def get_logs(self, job_id: str, offset: int = 0) -> LogChunk: ...


class LogFollower:
    """Copies new remote log lines into the task log; only whole lines, each once."""

    def __init__(self, client: LogSource, job_id: str, offset: int, log: Any) -> None:
        self.client, self.job_id, self.log = client, job_id, log
        self.offset = offset  # bytes of the remote log already printed (whole lines only)
        self.failed = False

    async def poll(self) -> None:
        if self.failed:
            return
        try:
            chunk = await self.client.get_logs(self.job_id, self.offset)
        except JobServiceError as exc:
            # The log is a courtesy: losing it must never fail or stall the wait.
            self.failed = True
            self.log.warning("Job %s: not following its log any more: %s", self.job_id, exc)
            return
        text = chunk.data.encode()[:MAX_LOG_BYTES_PER_POLL].decode("utf-8", errors="ignore")
        whole, _, _ = text.rpartition("\n")
        if not whole and not text.endswith("\n"):
            return  # no complete line yet
        for line in whole.split("\n"):
            self.log.info("[job %s] %s", self.job_id, line)
        self.offset += len(whole.encode()) + 1
