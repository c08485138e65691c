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


# How far along its life cycle a status is: QUEUED < RUNNING < terminal. CANCELLING ranks with
# RUNNING: a job being cancelled may never have run, so it passes no RUNNING target; it is
# waited out until it ends CANCELLED (or otherwise).
_STAGE: dict[JobStatus, int] = {
    JobStatus.QUEUED: 0,
    JobStatus.RUNNING: 1,
    JobStatus.CANCELLING: 1,
    JobStatus.SUCCEEDED: 2,
    JobStatus.FAILED: 2,
    JobStatus.CANCELLED: 2,
}


class WaitVerdict(str, enum.Enum):
    """What one observed status means for a wait."""

    DONE = "done"  # a target status was reached (or passed)
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


def reached(status: JobStatus, targets: frozenset[JobStatus]) -> bool:
    """Whether a job in ``status`` is in one of ``targets`` or has passed it
    (QUEUED < RUNNING < terminal): a job that already SUCCEEDED has been RUNNING."""
    return status in targets or any(_STAGE[status] > _STAGE[target] for target in targets)


def verdict(
    status: JobStatus | None,
    targets: frozenset[JobStatus] = SUCCESS,
    failures: frozenset[JobStatus] = FAILURE,
) -> WaitVerdict:
    """Decide what ``status`` means for a wait on ``targets``.

    ``failures`` are checked first: a job in one of them fails the wait even if it passed a
    target (a job FAILED has been RUNNING, but a wait for RUNNING that lists FAILED fails).
    Then a target reached *or passed* ends the wait (``RUNNING`` is reached by a job already
    SUCCEEDED). A terminal status that is neither ends the wait as a failure, because the job
    can no longer reach a target. ``None`` stands for a status the service reported that we do
    not know: it keeps the wait going and never counts as success.
    """
    if status is None:
        return WaitVerdict.WAITING
    if status in failures:
        return WaitVerdict.FAILED
    if reached(status, targets):
        return WaitVerdict.DONE
    if status in TERMINAL:
        return WaitVerdict.FAILED
    return WaitVerdict.WAITING
