"""The job service itself: state machine, scheduling, persistence and long-poll.

Everything runs on one asyncio loop. Jobs that are not terminal (and terminal
jobs whose last change is not yet written) live in memory and are the truth;
SQLite holds every job and is written in small batches ("group commit"): all
changes made during one loop iteration go out in one short transaction. A
submission is answered only once its job is committed, so an acknowledged job
survives a crash or restart.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
import itertools
import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jobservice_local import jobtypes, orphans
from jobservice_local.jobtypes import CommandSpec, PythonSpec, SleepSpec
from jobservice_local.models import (
    CANCELLED_ERROR,
    RESTARTED_ERROR,
    StoredJob,
    TimestampClock,
    dumps,
    empty_progress,
    loads,
    new_job_id,
    request_fingerprint,
)
from jobservice_local.problems import Problem, invalid_request, job_not_found
from jobservice_local.runners import (
    Execution,
    RunOutcome,
    SleepExecution,
    append_log,
    command_execution,
    python_execution,
)
from jobservice_local.status import JobStatus
from jobservice_local.store import JobStore, log_dir_for, private_dir

log = logging.getLogger(__name__)

#: environment variables the jobs' processes never inherit from the service.
PRIVATE_ENV = frozenset({"JOBSERVICE_TOKEN"})
FLUSH_RETRY_DELAY = 1.0
#: most rows written in one transaction from the event loop.
FLUSH_BATCH = 2000
#: most ids in one ``IN (...)`` lookup: SQLite before 3.32 binds at most 999 parameters.
STORE_LOOKUP_CHUNK = 500
#: our cursors are ~100 characters; anything much longer is not one of them.
MAX_CURSOR_LENGTH = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class LocalConfig:
    """What the CLI configures.

    :param db_path: the SQLite database; job logs go to ``<db_path>.logs/``.
    :param token: the bearer token, or ``None`` for no auth.
    :param allow_python: enable the ``python`` job type.
    :param allow_command: enable the ``command`` job type.
    :param max_concurrency: at most this many jobs RUNNING (or CANCELLING) at once.
    :param cancel_grace: seconds between SIGTERM and SIGKILL when stopping a process.
    :param listen_host: the address the service listens on (the ``Host`` header must name it).
    :param allowed_hosts: more names the ``Host`` header may give (``--allowed-host``).
    :param auth_scheme: how clients send the token: ``bearer``, or for tests ``basic``/``header``.
    :param basic_user: the user name of ``basic``.
    :param auth_header: the header of ``header``.
    """

    db_path: Path
    token: str | None = None
    allow_python: bool = False
    allow_command: bool = False
    max_concurrency: int = 10_000
    cancel_grace: float = 5.0
    listen_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    auth_scheme: str = "bearer"
    basic_user: str | None = None
    auth_header: str | None = None

    @property
    def enabled_types(self) -> frozenset[str]:
        """The job types this service accepts."""
        enabled = {jobtypes.SLEEP}
        if self.allow_python:
            enabled.add(jobtypes.PYTHON)
        if self.allow_command:
            enabled.add(jobtypes.COMMAND)
        return frozenset(enabled)


@dataclasses.dataclass(frozen=True, slots=True)
class Submission:
    """A syntactically valid ``POST /v1/jobs`` body."""

    type: str
    params: dict[str, Any]
    meta: dict[str, Any]
    timeout_s: float | None


def encode_cursor(job: StoredJob) -> str:
    """An opaque keyset cursor positioned after ``job``."""
    raw = dumps([job.created_at, job.id]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The keyset position of a cursor; raise a 400 problem if it is not one of ours."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = loads(raw, max_depth=1)
        if not isinstance(created_at, str) or not isinstance(job_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error):
        raise invalid_request("query parameter 'cursor' is not a valid cursor", param="cursor") from None
    return created_at, job_id


def _utf8_sequence_length(lead: int) -> int:
    """Bytes in the UTF-8 sequence that starts with ``lead`` (1 for anything invalid)."""
    if 0xC0 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    if 0xF0 <= lead < 0xF8:
        return 4
    return 1


def utf8_complete_length(chunk: bytes) -> int:
    """Length of the longest prefix of ``chunk`` that does not end inside a UTF-8 character."""
    end = len(chunk)
    lead = end - 1
    while lead >= 0 and end - lead <= 4 and chunk[lead] & 0xC0 == 0x80:
        lead -= 1
    if lead < 0 or end - lead > 4:
        return end
    return lead if end - lead < _utf8_sequence_length(chunk[lead]) else end


class LocalJobService:
    """The local job service (no HTTP here; see :mod:`jobservice_local.app`).

    :param config: the service configuration. Nothing is opened until :meth:`start`.
    """

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.store = JobStore(config.db_path)
        self.log_dir = log_dir_for(config.db_path)
        self.clock = TimestampClock()
        #: no new work: no job starts, no long-poll waits, submissions get 503.
        self.closing = False
        # Set once close() stops the running jobs: how they end then is an effect of the
        # shutdown, not their outcome, so it is not recorded (the restart settles them).
        self._halting = False
        self._live: dict[str, StoredJob] = {}
        self._live_keys: dict[str, str] = {}
        self._dirty: dict[str, StoredJob] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._commit_waiters: dict[str, asyncio.Future[None]] = {}
        self._queue: deque[str] = deque()
        self._running = 0
        self._executions: dict[str, Execution] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_reasons: dict[str, str] = {}
        self._timeouts: dict[str, asyncio.TimerHandle] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._child_env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the database, settle jobs interrupted by a restart and start queued ones.

        What a restart does: a QUEUED job stays queued (started in submission order); a job that
        was running is FAILED (``ServiceRestarted``), one that was being cancelled CANCELLED; a
        ``python``/``command`` job's process group, when it is still running (after a crash), is
        stopped first, SIGTERM and SIGKILL after the cancel grace, so no copy runs unwatched.
        """
        private_dir(self.log_dir)
        self.store.open()
        active = self.store.active()
        fates = await self._stop_orphans(active)
        failed = cancelled = queued = 0
        for job in active:
            fate = fates.get(job.id, "")
            if fate:
                self._append_log(job.id, f"jobservice-local: the job service restarted while this job was running; {fate}\n")
            if job.needs_settling:
                self._settle_undecodable(job)
                failed += 1
            elif job.status is JobStatus.QUEUED:
                self._remember(job)
                self._queue.append(job.id)
                queued += 1
            elif job.status is JobStatus.CANCELLING:
                self._finish(job, JobStatus.CANCELLED, error=dict(CANCELLED_ERROR))
                cancelled += 1
            else:
                message = RESTARTED_ERROR["message"] + (f"; {fate}" if fate else "")
                self._finish(job, JobStatus.FAILED, error={"type": RESTARTED_ERROR["type"], "message": message})
                if not fate:
                    self._append_log(job.id, f"jobservice-local: {message}\n")
                failed += 1
        self._flush()
        if failed or cancelled or queued:
            log.info(
                "recovered jobs after restart: %d failed (were running), %d cancelled, %d queued",
                failed,
                cancelled,
                queued,
            )
        self._pump()

    async def _stop_orphans(self, active: list[StoredJob]) -> dict[str, str]:
        """Stop the process groups a crash left running; job id -> what became of its group."""
        fates: dict[str, str] = {}
        ours: dict[int, list[str]] = {}
        for job in active:
            if job.pgid is None or job.status is JobStatus.QUEUED:
                continue
            if not orphans.group_alive(job.pgid):
                fates[job.id] = f"its process group {job.pgid} had already ended"
            elif orphans.is_our_group(job.pgid, job.proc_start):
                ours.setdefault(job.pgid, []).append(job.id)
            else:
                fates[job.id] = (
                    f"the process group {job.pgid} recorded for it is not its own any more (a reused id, or another boot), "
                    "so it was not stopped"
                )
        if ours:
            log.warning("stopping %d job process group(s) left running by a crash: %s", len(ours), sorted(ours))
            for stopped in await orphans.stop_groups(list(ours), self.config.cancel_grace):
                fate = (
                    f"its process group {stopped.pgid} was still running and was stopped ({stopped.by})"
                    if stopped.by != "still alive"
                    else f"its process group {stopped.pgid} was still running and could not be stopped"
                )
                for job_id in ours[stopped.pgid]:
                    fates[job_id] = fate
        return fates

    def begin_shutdown(self) -> None:
        """Stop waiting: answer every pending long-poll now."""
        self.closing = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._waiters.clear()

    async def close(self) -> None:
        """Stop timers and processes, write everything and close the database.

        Jobs still running stay RUNNING in the database, so the next start marks
        them failed with ``ServiceRestarted`` (their work is lost either way).
        """
        self.begin_shutdown()
        self._halting = True
        for timer in self._timeouts.values():
            timer.cancel()
        self._timeouts.clear()
        for job_id, execution in list(self._executions.items()):
            if execution.stops_at_once:
                self._tasks[job_id].cancel()
            else:
                execution.terminate(self.config.cancel_grace)
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.cancel_grace + 5)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        self.store.close()

    # ------------------------------------------------------------------ persistence

    def _remember(self, job: StoredJob) -> None:
        self._live[job.id] = job
        if job.key is not None:
            self._live_keys[job.key] = job.id

    def _forget(self, job: StoredJob) -> None:
        self._live.pop(job.id, None)
        if job.key is not None and self._live_keys.get(job.key) == job.id:
            del self._live_keys[job.key]

    def _schedule_flush(self, delay: float = 0.0) -> None:
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            flush = functools.partial(self._flush, everything=False)
            if delay:
                self._flush_handle = loop.call_later(delay, flush)
            else:
                self._flush_handle = loop.call_soon(flush)

    def _flush(self, *, everything: bool = True) -> None:
        """Write pending changes in short transactions and wake the submitters of written jobs.

        From the loop (``everything=False``) one batch is written per call and the
        rest is rescheduled, so a burst of changes never blocks the loop for long;
        callers that need the database current use ``everything=True``.
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self._dirty:
            batch = [self._dirty.pop(job_id) for job_id in list(itertools.islice(self._dirty, FLUSH_BATCH))]
            try:
                self.store.write(batch)
            except Exception as exc:
                log.exception("could not write %d job(s) to %s; retrying", len(batch), self.store.path)
                problem = Problem(503, "service-unavailable", f"could not write to the job database: {exc}")
                for job in batch:
                    self._dirty.setdefault(job.id, job)
                    waiter = self._commit_waiters.pop(job.id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_exception(problem)
                if not self.closing:
                    self._schedule_flush(FLUSH_RETRY_DELAY)
                return
            for job in batch:
                if job.status.is_terminal and job.id not in self._dirty:
                    self._forget(job)
                waiter = self._commit_waiters.pop(job.id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            if not everything and self._dirty:
                self._schedule_flush()
                return

    async def _commit(self, job: StoredJob) -> None:
        """Wait until ``job`` is written to the database."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_waiters[job.id] = waiter
        self._dirty[job.id] = job
        self._schedule_flush()
        await waiter

    def _changed(self, job: StoredJob, now: str | None = None) -> None:
        """Record that ``job`` changed: new version, persisted soon, long-polls woken."""
        job.version += 1
        job.updated_at = now or self.clock.now()
        self._remember(job)
        self._dirty[job.id] = job
        self._schedule_flush()
        for waiter in self._waiters.pop(job.id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _finish(
        self,
        job: StoredJob,
        status: JobStatus,
        *,
        error: dict[str, str] | None = None,
        result_json: str | None = None,
    ) -> None:
        now = self.clock.now()
        job.status = status
        job.finished_at = now
        job.error = error
        job.result_json = result_json
        self._changed(job, now)

    def _log_path(self, job_id: str) -> Path:
        return self.log_dir / f"{job_id}.log"

    def _append_log(self, job_id: str, text: str) -> None:
        try:
            append_log(self._log_path(job_id), text)
        except OSError:
            log.warning("could not write to the log of job %s", job_id, exc_info=True)

    # ------------------------------------------------------------------ queries

    def _settle_undecodable(self, job: StoredJob) -> None:
        """Record as FAILED a job whose stored row could not be decoded (the store reports it so)."""
        job.needs_settling = False
        job.finished_at = self.clock.now()
        assert job.error is not None
        log.warning("job %s: %s", job.id, job.error["message"])
        self._changed(job, job.finished_at)

    def _stored(self, job: StoredJob | None) -> StoredJob | None:
        if job is not None and job.needs_settling:
            self._settle_undecodable(job)
        return job

    def get(self, job_id: str) -> StoredJob | None:
        """The job ``job_id`` (without its result), or ``None``."""
        return self._live.get(job_id) or self._stored(self.store.get(job_id))

    def get_many(self, job_ids: list[str]) -> tuple[list[StoredJob], list[str]]:
        """The jobs among ``job_ids`` in the order asked (duplicates once) and the missing ids."""
        unique = list(dict.fromkeys(job_ids))
        found = {job_id: self._live[job_id] for job_id in unique if job_id in self._live}
        for job in self.store.get_many([job_id for job_id in unique if job_id not in found]).values():
            self._stored(job)
            found[job.id] = job
        jobs = [found[job_id] for job_id in unique if job_id in found]
        return jobs, [job_id for job_id in unique if job_id not in found]

    def list_jobs(
        self,
        *,
        statuses: list[JobStatus],
        types: list[str],
        created_after: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[StoredJob], str | None]:
        """One page of jobs ordered by ``(created_at, id)`` and the cursor of the next page."""
        self._flush()
        after = decode_cursor(cursor) if cursor is not None else None
        jobs = self.store.list_page(statuses=statuses, types=types, created_after=created_after, after=after, limit=limit + 1)
        # The flush above made the rows current; prefer the in-memory objects anyway.
        for job in jobs:
            self._stored(job)
        page = [self._live.get(job.id, job) for job in jobs[:limit]]
        return page, encode_cursor(page[-1]) if len(jobs) > limit else None

    async def wait_for_change(self, job_id: str, seen: int | None, wait_s: float) -> StoredJob | None:
        """The job, after waiting up to ``wait_s`` seconds while its version is ``seen``."""
        if seen is not None:
            await self.wait_for_any_change({job_id: seen}, wait_s)
        return self.get(job_id)

    def changed_since(self, seen: Mapping[str, int]) -> tuple[list[StoredJob], list[str]]:
        """The jobs whose version differs from ``seen[job_id]`` and the ids with no job, in the order of ``seen``.

        One pass over ``seen``: jobs in memory are read from there, the others (terminal
        and written) from the database in a few ``IN (...)`` queries, never one per id.
        """
        stored_ids = [job_id for job_id in seen if job_id not in self._live]
        stored: dict[str, StoredJob] = {}
        for start in range(0, len(stored_ids), STORE_LOOKUP_CHUNK):
            for found in self.store.get_many(stored_ids[start : start + STORE_LOOKUP_CHUNK]).values():
                stored[found.id] = found
                self._stored(found)
        changed: list[StoredJob] = []
        missing: list[str] = []
        for job_id, version in seen.items():
            job = self._live.get(job_id) or stored.get(job_id)
            if job is None:
                missing.append(job_id)
            elif job.version != version:
                changed.append(job)
        return changed, missing

    async def wait_for_any_change(self, seen: Mapping[str, int], wait_s: float) -> None:
        """Return once any job's version differs from ``seen[job_id]``, or after ``wait_s`` seconds."""
        if wait_s <= 0 or self.closing:
            return
        changed, missing = self.changed_since(seen)
        if changed or missing:
            return
        await self._wait_for_wakeup(seen, wait_s)

    async def watch(self, seen: Mapping[str, int], wait_s: float) -> tuple[list[StoredJob], list[str]]:
        """:meth:`changed_since` once it is not empty, or empty lists after ``wait_s`` seconds."""
        changed, missing = self.changed_since(seen)
        if changed or missing or wait_s <= 0 or self.closing:
            return changed, missing
        await self._wait_for_wakeup(seen, wait_s)
        # Woken by a change (or the wait ended): list whatever differs now, which may be several jobs.
        return self.changed_since(seen)

    async def _wait_for_wakeup(self, job_ids: Iterable[str], wait_s: float) -> None:
        """Sleep until :meth:`_changed` touches one of ``job_ids``, the service closes, or ``wait_s`` passes."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watched = list(job_ids)
        for job_id in watched:
            self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel (a client gone, a shutdown)
            # that lands as the waiter is woken.
            async with asyncio.timeout(wait_s):
                await waiter
        except TimeoutError:
            pass
        finally:
            for job_id in watched:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[job_id]

    def result_json(self, job_id: str) -> str:
        """The result JSON of a SUCCEEDED job; raise the 404/409 problem otherwise."""
        job = self.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        if job.status is not JobStatus.SUCCEEDED:
            raise Problem(
                409,
                "job-not-succeeded",
                f"job {job_id} is {job.status.value}; only a SUCCEEDED job has a result",
                job_id=job_id,
                job_status=job.status.value,
            )
        result = job.result_json if job.result_json is not None else self.store.result_json(job_id)
        return result if result is not None else "null"

    def read_log(self, job: StoredJob, offset: int, limit: int) -> dict[str, Any]:
        """Up to ``limit`` bytes of the job's log from byte ``offset``, on a UTF-8 boundary."""
        terminal = job.status.is_terminal  # read before the size, so "complete" is never early
        try:
            handle = open(self._log_path(job.id), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return {"job_id": job.id, "data": "", "offset": offset, "next_offset": 0, "complete": terminal}
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if offset >= size:
                return {"job_id": job.id, "data": "", "offset": offset, "next_offset": size, "complete": terminal}
            handle.seek(offset)
            chunk = handle.read(limit)
            if not (terminal and offset + len(chunk) >= size):
                cut = utf8_complete_length(chunk)
                if cut == 0 and chunk:
                    # ``limit`` is smaller than this one character: return the whole character.
                    chunk += handle.read(3)
                    needed = _utf8_sequence_length(chunk[0])
                    cut = needed if len(chunk) >= needed else 0
                chunk = chunk[:cut]
        next_offset = offset + len(chunk)
        return {
            "job_id": job.id,
            "data": chunk.decode("utf-8", errors="replace"),
            "offset": offset,
            "next_offset": next_offset,
            "complete": terminal and next_offset >= size,
        }

    def health(self) -> dict[str, int]:
        """The number of jobs per status."""
        self._flush()
        counts = self.store.counts()
        return {status.value: counts.get(status.value, 0) for status in JobStatus}

    # ------------------------------------------------------------------ commands

    def _find_by_key(self, key: str) -> StoredJob | None:
        job_id = self._live_keys.get(key)
        if job_id is not None:
            return self._live[job_id]
        return self._stored(self.store.find_by_key(key))

    async def submit(self, submission: Submission, key: str | None) -> tuple[StoredJob, bool]:
        """Create a job (or return the one submitted earlier with ``key``).

        :return: the job and whether it was created now.
        """
        fingerprint = request_fingerprint(submission.type, submission.params, submission.meta, submission.timeout_s)
        if key is not None:
            existing = self._find_by_key(key)
            if existing is not None:
                if existing.fingerprint != fingerprint:
                    raise Problem(
                        409,
                        "idempotency-key-reused",
                        f"Idempotency-Key {key!r} was used for job {existing.id} with a different request",
                        job_id=existing.id,
                    )
                return existing, False
        jobtypes.check_type(submission.type, self.config.enabled_types)
        jobtypes.parse_spec(submission.type, submission.params)
        if self.closing:
            raise Problem(503, "service-unavailable", "the job service is shutting down")
        now = self.clock.now()
        job = StoredJob(
            id=new_job_id(),
            key=key,
            type=submission.type,
            params=submission.params,
            meta=submission.meta,
            timeout_s=submission.timeout_s,
            fingerprint=fingerprint,
            status=JobStatus.QUEUED,
            version=1,
            progress=empty_progress(),
            attempt=1,
            created_at=now,
            started_at=None,
            updated_at=now,
            finished_at=None,
            error=None,
            params_json=dumps(submission.params),
            meta_json=dumps(submission.meta),
        )
        self._remember(job)
        self._queue.append(job.id)
        try:
            await self._commit(job)
        except Problem:
            # Not written: forget it, so a failed submission never runs later.
            self._dirty.pop(job.id, None)
            self._forget(job)
            raise
        log.debug("job %s submitted (type %s)", job.id, job.type)
        self._pump()
        return job, True

    def cancel(self, job_id: str) -> StoredJob | None:
        """Request cancellation; return the job (unchanged if it is terminal or stopping)."""
        job = self.get(job_id)
        if job is None or job.status.is_terminal or job.status is JobStatus.CANCELLING:
            return job
        if job.status is JobStatus.QUEUED:
            self._finish(job, JobStatus.CANCELLED, error=dict(CANCELLED_ERROR))
            log.debug("job %s cancelled while queued", job_id)
        else:
            self._stop(job, "cancel")
        return job

    # ------------------------------------------------------------------ running

    def _pump(self) -> None:
        """Start queued jobs, in submission order, while there are free slots."""
        while not self.closing and self._queue and self._running < self.config.max_concurrency:
            job = self._live.get(self._queue.popleft())
            if job is not None and job.status is JobStatus.QUEUED:
                self._start(job)

    def _start(self, job: StoredJob) -> None:
        if job.type not in self.config.enabled_types:
            # Possible after a restart with other flags.
            flag = jobtypes.ENABLING_FLAG.get(job.type, "")
            message = f"job type {job.type!r} is disabled in this service; start it with {flag}"
            self._finish(job, JobStatus.FAILED, error={"type": "JobTypeDisabled", "message": message})
            return
        try:
            spec = jobtypes.parse_spec(job.type, job.params)
        except Problem as problem:
            self._finish(job, JobStatus.FAILED, error={"type": "InvalidParams", "message": problem.detail})
            return
        now = self.clock.now()
        job.status = JobStatus.RUNNING
        job.started_at = now
        if isinstance(spec, SleepSpec):
            job.progress = {"completed": 0, "total": spec.steps, "message": None}
        self._changed(job, now)

        def on_progress(completed: float, total: float | None, message: str | None) -> None:
            self._progress(job, completed, total, message)

        def on_spawn(pid: int) -> None:
            # Written at once (not a change of the record: no new version), so that a crash from
            # now on leaves the job's process group findable.
            job.pgid, job.proc_start = pid, orphans.start_marker(pid)
            self._dirty[job.id] = job
            self._schedule_flush()

        log_path = self._log_path(job.id)
        env = {**self._child_env, "JOBSERVICE_JOB_ID": job.id}
        execution: Execution
        if isinstance(spec, SleepSpec):
            execution = SleepExecution(spec, on_progress, log_path)
        elif isinstance(spec, PythonSpec):
            execution = python_execution(spec, env, log_path, on_progress, on_spawn)
        else:
            assert isinstance(spec, CommandSpec)
            execution = command_execution(spec, env, log_path, on_spawn)
        self._executions[job.id] = execution
        self._running += 1
        self._tasks[job.id] = asyncio.create_task(self._drive(job, execution), name=f"job {job.id}")
        if job.timeout_s is not None:
            self._timeouts[job.id] = asyncio.get_running_loop().call_later(job.timeout_s, self._on_timeout, job.id)
        log.debug("job %s started", job.id)

    def _progress(self, job: StoredJob, completed: float, total: float | None, message: str | None) -> None:
        if job.status.is_terminal:
            return
        progress = {"completed": completed, "total": total, "message": message}
        if progress != job.progress:
            job.progress = progress
            self._changed(job)

    async def _drive(self, job: StoredJob, execution: Execution) -> None:
        outcome: RunOutcome | None = None
        try:
            outcome = await execution.run()
        except asyncio.CancelledError:
            pass  # a stop of a timer-based job, or the shutdown
        except Exception as exc:
            log.exception("job %s: the service failed to run it", job.id)
            outcome = RunOutcome(
                JobStatus.FAILED,
                error={"type": "InternalError", "message": f"the job service failed to run the job: {exc}"},
            )
        finally:
            self._running -= 1
            self._executions.pop(job.id, None)
            self._tasks.pop(job.id, None)
            timer = self._timeouts.pop(job.id, None)
            if timer is not None:
                timer.cancel()
            reason = self._stop_reasons.pop(job.id, None)
        if self._halting:
            return
        if not job.status.is_terminal:
            if reason is not None:
                self._finish_stopped(job, reason)
            elif outcome is not None:
                self._finish(job, outcome.status, error=outcome.error, result_json=outcome.result_json)
            log.debug("job %s ended %s", job.id, job.status.value)
        self._pump()

    def _on_timeout(self, job_id: str) -> None:
        self._timeouts.pop(job_id, None)
        job = self._live.get(job_id)
        if job is not None and job.status is JobStatus.RUNNING:
            self._append_log(job_id, f"jobservice-local: job exceeded timeout_s={job.timeout_s:g}; stopping it\n")
            self._stop(job, "timeout")

    def _stop(self, job: StoredJob, reason: str) -> None:
        """Stop a RUNNING job because of ``reason`` (``"cancel"`` or ``"timeout"``)."""
        if job.id in self._stop_reasons:
            return
        self._stop_reasons[job.id] = reason
        timer = self._timeouts.pop(job.id, None)
        if timer is not None:
            timer.cancel()
        execution = self._executions.get(job.id)
        if execution is None or execution.stops_at_once:
            task = self._tasks.get(job.id)
            if task is not None:
                task.cancel()
            self._finish_stopped(job, reason)
            return
        if reason == "cancel":
            job.status = JobStatus.CANCELLING
            self._changed(job)
        execution.terminate(self.config.cancel_grace)

    def _finish_stopped(self, job: StoredJob, reason: str) -> None:
        if reason == "cancel":
            self._finish(job, JobStatus.CANCELLED, error=dict(CANCELLED_ERROR))
        else:
            message = f"job exceeded timeout_s={job.timeout_s:g}"
            self._finish(job, JobStatus.FAILED, error={"type": "Timeout", "message": message})


def parse_timeout(value: Any) -> float | None:
    """Validate ``timeout_s`` (a positive number or null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise invalid_request("field 'timeout_s' must be a positive number or null", field="timeout_s")
    return float(value)
