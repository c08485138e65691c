"""Who is due when: the shared watcher's check schedule, as plain data (no asyncio, no clock).

Every wait on a service asks for its next status check ``delay`` seconds from now. The
schedule keeps those checks and answers three questions for the watcher's poller: when must
it wake up, which checks are due now (so that checks falling due close together share one
batch request), and which may be *held* instead, because the service's watch will report
the job's next change at least as soon as a poll would. Times are plain numbers the caller
passes in, so every rule here is tested with arithmetic.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from jobservice_provider.core.job import Job
from jobservice_provider.core.status import TERMINAL

# A check is answered within ±(window / 2) of when it is due, so that checks falling due
# close together share one request; and within ±SLACK_FRACTION of its own delay, so a wait
# that polls faster than the window keeps its pace. A second (±0.5 s, for waits polling every
# 5 s or slower) cut the requests of 1,000 polling waits by a fifth and the CPU by an eighth
# against half a second, latency unchanged (docs/benchmarks.md, issue 15).
DEFAULT_WINDOW = 1.0
SLACK_FRACTION = 0.1


class Unchanged:
    """What a wait lets the watcher do when a check finds its job as the wait last saw it: check
    again ``next_delay()`` seconds later without waking the wait (most checks of a long job find
    nothing new, and a wake-up is most of what a check costs a triggerer), as long as that check
    falls within ``horizon`` seconds of the first (None: no bound but the wait's own deadline).
    ``until`` is that bound in schedule time, set when the first check is scheduled.

    "As last seen" is what the wait acts on: status, version, progress, error and the record's
    times. Anything else (say, a field of ``meta``) can change without the wait hearing of it.
    """

    __slots__ = ("horizon", "last", "next_delay", "signature", "until")

    def __init__(self, last: Job, next_delay: Callable[[], float], horizon: float | None = None) -> None:
        self.last, self.next_delay, self.horizon = last, next_delay, horizon
        self.signature = _signature(last)
        self.until: float | None = None

    def holds_for(self, job: Job) -> bool:
        return job is self.last or _signature(job) == self.signature


def _signature(job: Job) -> tuple[Any, ...]:
    # Everything wait_for_job reads from a record between changes: the status line's fields,
    # Staleness's signature, and the times the job's age is counted from.
    return (job.raw_status, job.version, job.progress, job.error, job.updated_at, job.started_at, job.created_at)


class Check:
    """One pending status check of one wait. ``token`` is the owner's (the watcher's future);
    ``unchanged`` says whether an answer that finds the job unchanged is followed by another
    check instead of being handed over."""

    __slots__ = ("delay", "done", "held", "hold", "job_id", "latest", "not_before", "seq", "token", "unchanged")

    def __init__(
        self,
        job_id: str,
        not_before: float,
        latest: float,
        delay: float,
        hold: bool,
        seq: int,
        token: Any,
        unchanged: Unchanged | None = None,
    ) -> None:
        self.job_id = job_id
        self.not_before = not_before  # the first moment it may be answered
        self.latest = latest  # the last moment it may be answered (unless held)
        self.delay = delay  # how long the wait chose to wait for it
        self.hold = hold  # may wait past `latest` for a change while the watch covers the job
        self.held = False  # out of the time order, waiting for the watch
        self.done = False  # answered, failed or withdrawn
        self.seq = seq
        self.token = token
        self.unchanged = unchanged

    def __lt__(self, other: Check) -> bool:
        # (latest, seq) order, without building two tuples per comparison: the heap compares
        # checks about twenty times per status check.
        if self.latest != other.latest:
            return self.latest < other.latest
        return self.seq < other.seq


class Entry:
    """What the schedule knows of one job."""

    __slots__ = ("checks", "covered", "record", "subscribers")

    def __init__(self) -> None:
        self.checks: list[Check] = []  # pending checks, due or held
        self.record: Job | None = None  # the last record seen
        self.covered = False  # the open watch lists it: its next change will be reported
        self.subscribers = 0


class CheckSchedule:
    """The pending checks of every wait on one service, in the order they fall due."""

    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self.window = window
        self.paused_until = 0.0
        self.jobs: dict[str, Entry] = {}
        self._heap: list[Check] = []  # by latest moment; done and held checks are skipped lazily
        self._seq = itertools.count()
        self.checks_added = 0  # every check ever scheduled, rechecks included (for tests and the benchmark)

    # -- subscriptions --------------------------------------------------------------------------
    def subscribe(self, job_id: str) -> None:
        """A wait on ``job_id`` begins: keep the job (and its record) until its last wait ends."""
        self._entry(job_id).subscribers += 1

    def unsubscribe(self, job_id: str) -> list[Check]:
        """A wait on ``job_id`` ended; returns the job's checks withdrawn with its last wait."""
        entry = self.jobs.get(job_id)
        if entry is None:
            return []
        entry.subscribers -= 1
        if entry.subscribers > 0:
            return []
        del self.jobs[job_id]
        return self._close(entry.checks)

    def _entry(self, job_id: str) -> Entry:
        entry = self.jobs.get(job_id)
        if entry is None:
            entry = self.jobs[job_id] = Entry()
        return entry

    # -- checks ---------------------------------------------------------------------------------
    def add(
        self,
        job_id: str,
        now: float,
        delay: float,
        hold: bool = False,
        token: Any = None,
        unchanged: Unchanged | None = None,
    ) -> Check:
        """A check of ``job_id`` due ``delay`` seconds after ``now``; with ``unchanged``, checked
        again while it finds the job unchanged, up to ``unchanged.horizon`` after its first check
        was scheduled."""
        delay = max(0.0, delay)
        due = now + delay
        slack = min(self.window / 2, delay * SLACK_FRACTION)
        if unchanged is not None and unchanged.until is None:
            unchanged.until = now + unchanged.horizon if unchanged.horizon is not None else float("inf")
        check = Check(job_id, due - slack, due + slack, delay, hold, next(self._seq), token, unchanged)
        self.checks_added += 1
        self._entry(job_id).checks.append(check)
        heapq.heappush(self._heap, check)
        return check

    def wake_at(self) -> float | None:
        """When the poller must act next (None: nothing is scheduled)."""
        while self._heap and (self._heap[0].done or self._heap[0].held):
            heapq.heappop(self._heap)
        if not self._heap:
            return None
        return max(self._heap[0].latest, self.paused_until)

    def take_due(self, now: float, *, watch_ok: bool = False, next_watch_by: float = 0.0) -> list[Check]:
        """Pop the checks to poll now: those whose slack has begun, except checks that may be
        held because the watch covers their job (they stay with the job, marked held)."""
        if now < self.paused_until:
            return []
        due: list[Check] = []
        later: list[Check] = []
        # Slack is at most half the window, so every check due now ends by now + window.
        while self._heap and self._heap[0].latest <= now + self.window:
            check = heapq.heappop(self._heap)
            if check.done or check.held:
                continue
            if check.not_before > now:
                later.append(check)
            elif check.hold and watch_ok and self._may_hold(check, now, next_watch_by):
                check.held = True
            else:
                due.append(check)
        for check in later:
            heapq.heappush(self._heap, check)
        return due

    def _may_hold(self, check: Check, now: float, next_watch_by: float) -> bool:
        """Whether the watch will report the job's change at least as soon as a poll would.

        Yes if the open watch lists the job. A job that got its first record since is listed by
        the next watch, which reports a change made in between at once (it sends the version
        we saw): holding it is as good as polling if that watch starts within the check's delay.
        """
        entry = self.jobs.get(check.job_id)
        if entry is None or entry.record is None:
            return False
        if entry.covered:
            return True
        return watchable(entry.record) and next_watch_by - now <= check.delay

    # -- answers --------------------------------------------------------------------------------
    def answer(self, job: Job) -> tuple[list[Check], bool]:
        """Record ``job``; returns its pending checks (now answered) and whether the job just
        joined (its first record, still running: the watch can take it from now on)."""
        entry = self.jobs.get(job.id)
        if entry is None:
            return [], False
        joined = entry.record is None and watchable(job)
        entry.record = job
        checks, entry.checks = entry.checks, []
        return self._close(checks), joined

    def fail(self, job_id: str) -> list[Check]:
        """The job's pending checks, now closed (the caller hands them the error)."""
        entry = self.jobs.get(job_id)
        if entry is None:
            return []
        checks, entry.checks = entry.checks, []
        return self._close(checks)

    def close(self, checks: list[Check]) -> list[Check]:
        """Close particular checks (answered or failed one by one, or withdrawn by their waiters:
        never sent or answered after this); returns those that were still open."""
        closing = [check for check in checks if not check.done]
        for check in closing:
            entry = self.jobs.get(check.job_id)
            if entry is not None and check in entry.checks:
                entry.checks.remove(check)
        return self._close(closing)

    @staticmethod
    def _close(checks: list[Check]) -> list[Check]:
        open_checks = [check for check in checks if not check.done]
        for check in open_checks:
            check.done = True
        return open_checks

    def pending(self) -> Iterator[Check]:
        """Every open check (held or not)."""
        for entry in self.jobs.values():
            yield from (check for check in entry.checks if not check.done)

    # -- the service's health -------------------------------------------------------------------
    def pause(self, until: float) -> None:
        """Send nothing before ``until`` (the service asked us to back off)."""
        self.paused_until = max(self.paused_until, until)

    def resume(self) -> None:
        self.paused_until = 0.0

    # -- the watch ------------------------------------------------------------------------------
    def watch_list(self, limit: int) -> dict[str, int]:
        """The jobs the next watch lists (job id → version seen), marking them covered; held
        checks of jobs it cannot list go back to the time order, due at once."""
        seen: dict[str, int] = {}
        for job_id, entry in self.jobs.items():
            record = entry.record
            if record is not None and watchable(record) and len(seen) < limit:
                assert record.version is not None  # watchable() says so
                seen[job_id] = record.version
                entry.covered = True
            else:
                self._uncover(entry)
        return seen

    def uncover_all(self) -> int:
        """No watch reports changes any more: every held check goes back to polling, due at once.
        Returns how many were released."""
        return sum(self._uncover(entry) for entry in self.jobs.values())

    def _uncover(self, entry: Entry) -> int:
        entry.covered = False
        released = 0
        for check in entry.checks:
            if check.held and not check.done:
                check.held = False
                check.not_before = check.latest = float("-inf")  # due now, before anything else
                heapq.heappush(self._heap, check)
                released += 1
        return released


def watchable(job: Job) -> bool:
    """Whether a watch can report this job's next change: it has a version and has not ended."""
    return job.version is not None and job.status not in TERMINAL
