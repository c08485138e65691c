"""The one status model: what a remote job's status is and what it means for a wait."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class JobStatus(str, enum.Enum):
    """Life cycle of a remote job, in the native API's spelling."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


SUCCESS: frozenset[JobStatus] = frozenset({JobStatus.SUCCEEDED})
FAILURE: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
TERMINAL: frozenset[JobStatus] = SUCCESS | FAILURE
ACTIVE: frozenset[JobStatus] = frozenset(JobStatus) - TERMINAL


class WaitVerdict(str, enum.Enum):
    """What one observed status means for a wait."""

    DONE = "done"  # a target status was reached
    FAILED = "failed"  # a failure status (or a terminal status that is not a target) was reached
    WAITING = "waiting"


def parse_statuses(values: Iterable[JobStatus | str]) -> frozenset[JobStatus]:
    """Parse user-given statuses, naming the bad one in the error."""
    parsed = set()
    for value in values:
        try:
            parsed.add(JobStatus(str(value).upper()))
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise ValueError(f"unknown job status {value!r}; expected one of {known}") from None
    return frozenset(parsed)


def verdict(
    status: JobStatus | None,
    targets: frozenset[JobStatus] = SUCCESS,
    failures: frozenset[JobStatus] = FAILURE,
) -> WaitVerdict:
    """Decide what ``status`` means for a wait on ``targets``.

    ``None`` stands for a status the service reported that we do not know: it keeps
    the wait going and never counts as success. A terminal status that is neither a
    target nor a listed failure also ends the wait as a failure, because the job can
    no longer reach a target.
    """
    if status is None:
        return WaitVerdict.WAITING
    if status in targets:
        return WaitVerdict.DONE
    if status in failures or status in TERMINAL:
        return WaitVerdict.FAILED
    return WaitVerdict.WAITING
