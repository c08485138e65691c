"""SQLite persistence of the local job service (WAL, short transactions)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from jobservice_local.models import UNDECODABLE_ERROR_TYPE, StoredJob, dumps, empty_progress, loads
from jobservice_local.status import JobStatus

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    key          TEXT UNIQUE,
    fingerprint  TEXT NOT NULL,
    type         TEXT NOT NULL,
    params       TEXT NOT NULL,
    meta         TEXT NOT NULL,
    timeout_s    REAL,
    status       TEXT NOT NULL,
    version      INTEGER NOT NULL,
    progress     TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT,
    error        TEXT,
    result       TEXT,
    pgid         INTEGER,
    proc_start   TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at, id);
"""

_COLUMNS = (
    "id, key, fingerprint, type, params, meta, timeout_s, status, version, progress, attempt,"
    " created_at, started_at, updated_at, finished_at, error, pgid, proc_start"
)
#: columns added after the first release, added to an older database when it is opened.
_ADDED_COLUMNS = {"pgid": "INTEGER", "proc_start": "TEXT"}

_INSERT = f"INSERT INTO jobs ({_COLUMNS}, result) VALUES ({', '.join('?' * 19)})"

_UPDATE = """
UPDATE jobs SET status = ?, version = ?, progress = ?, attempt = ?, started_at = ?, updated_at = ?,
    finished_at = ?, error = ?, result = COALESCE(?, result), pgid = ?, proc_start = ?
WHERE id = ?
"""


class StoreLockedError(RuntimeError):
    """Another service process already uses this database."""


class JobStore:
    """The jobs table. All calls are synchronous and short; one connection, one thread.

    :param path: the SQLite database file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection."""
        if self._conn is None:
            raise RuntimeError("the job store is not open")
        return self._conn

    def open(self) -> None:
        """Open (and create) the database, refusing a second service on the same file.

        The database, its WAL and shared-memory files (SQLite gives them the database's mode)
        and the lock file are readable by their owner only: they hold every job's params and results.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = os.fdopen(private_file(Path(str(self.path) + ".lock"), os.O_WRONLY | os.O_APPEND), "ab")
        if fcntl is not None:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock_file.close()
                raise StoreLockedError(f"another jobservice-local process is using {self.path}") from None
        self._lock_file = lock_file
        os.close(private_file(self.path, os.O_RDONLY))
        for companion in ("-wal", "-shm", "-journal"):
            restrict(Path(str(self.path) + companion), PRIVATE_FILE_MODE)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        self._conn = conn

    def close(self) -> None:
        """Close the database and release the lock."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def write(self, jobs: Sequence[StoredJob]) -> None:
        """Write the jobs in one transaction: new ones whole, known ones' mutable columns only."""
        inserts = [
            (
                job.id,
                job.key,
                job.fingerprint,
                job.type,
                job.params_json,
                job.meta_json,
                job.timeout_s,
                job.status.value,
                job.version,
                dumps(job.progress),
                job.attempt,
                job.created_at,
                job.started_at,
                job.updated_at,
                job.finished_at,
                dumps(job.error) if job.error is not None else None,
                job.pgid,
                job.proc_start,
                job.result_json,
            )
            for job in jobs
            if not job.persisted
        ]
        updates = [
            (
                job.status.value,
                job.version,
                dumps(job.progress),
                job.attempt,
                job.started_at,
                job.updated_at,
                job.finished_at,
                dumps(job.error) if job.error is not None else None,
                job.result_json,
                job.pgid,
                job.proc_start,
                job.id,
            )
            for job in jobs
            if job.persisted
        ]
        if not jobs:
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if inserts:
                conn.executemany(_INSERT, inserts)
            if updates:
                conn.executemany(_UPDATE, updates)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        for job in jobs:
            job.persisted = True

    @staticmethod
    def _job(row: Sequence[Any]) -> StoredJob:
        try:
            return _decode(row)
        except Exception as exc:  # anything at all: one bad row must never break a read or a start
            return _undecodable(row, exc)

    def get(self, job_id: str) -> StoredJob | None:
        """One job (without its result), or ``None``."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row is not None else None

    def get_many(self, job_ids: Sequence[str]) -> dict[str, StoredJob]:
        """The jobs that exist among ``job_ids`` (at most a few hundred ids)."""
        if not job_ids:
            return {}
        marks = ",".join("?" * len(job_ids))
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id IN ({marks})", tuple(job_ids))
        return {row[0]: self._job(row) for row in rows}

    def find_by_key(self, key: str) -> StoredJob | None:
        """The job submitted with idempotency key ``key``, or ``None``."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE key = ?", (key,)).fetchone()
        return self._job(row) if row is not None else None

    def result_json(self, job_id: str) -> str | None:
        """The stored result JSON of a job, or ``None``."""
        row = self.conn.execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row is not None else None

    def list_page(
        self,
        *,
        statuses: Sequence[JobStatus] = (),
        types: Sequence[str] = (),
        created_after: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> list[StoredJob]:
        """Jobs ordered by ``(created_at, id)``, strictly after the keyset position ``after``."""
        clauses: list[str] = []
        args: list[Any] = []
        if statuses:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(s.value for s in statuses)
        if types:
            clauses.append(f"type IN ({','.join('?' * len(types))})")
            args.extend(types)
        if created_after is not None:
            clauses.append("created_at > ?")
            args.append(created_after)
        if after is not None:
            clauses.append("(created_at > ? OR (created_at = ? AND id > ?))")
            args.extend((after[0], after[0], after[1]))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY created_at, id LIMIT ?"
        args.append(limit)
        return [self._job(row) for row in self.conn.execute(sql, args)]

    def active(self) -> list[StoredJob]:
        """Every job that is not terminal, in submission order."""
        statuses = [s.value for s in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING)]
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE status IN (?, ?, ?) ORDER BY created_at, id", statuses)
        return [self._job(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """The number of jobs per status."""
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())


PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def restrict(path: Path, mode: int) -> None:
    """Take group and other permissions away from an existing ``path`` (left by an older version)."""
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, mode)


def private_file(path: Path, flags: int) -> int:
    """Open ``path`` (created mode 0600 if missing; an existing one restricted to its owner); return the descriptor."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700), or restrict an existing one to its owner."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    restrict(path, PRIVATE_DIR_MODE)


def log_dir_for(db_path: Path) -> Path:
    """Where the job logs of the database at ``db_path`` live."""
    return Path(os.fspath(db_path) + ".logs")


def _text(value: Any, name: str, *, optional: bool = False) -> Any:
    if (value is None and optional) or isinstance(value, str):
        return value
    raise ValueError(f"column {name!r} holds {type(value).__name__}, not text")


def _integer(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"column {name!r} holds {type(value).__name__}, not an integer")


def _json_column(value: Any, name: str, kind: type, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    decoded = loads(_text(value, name))
    if not isinstance(decoded, kind):
        raise ValueError(f"column {name!r} holds JSON that is not an {kind.__name__}")
    return decoded


def _decode(row: Sequence[Any]) -> StoredJob:
    """A row as a job; raises if any column is not what this service writes."""
    timeout_s = row[6]
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))):
        raise ValueError("column 'timeout_s' is not a number")
    progress = _json_column(row[9], "progress", dict)
    error = _json_column(row[15], "error", dict, optional=True)
    return StoredJob(
        id=_text(row[0], "id"),
        key=_text(row[1], "key", optional=True),
        fingerprint=_text(row[2], "fingerprint"),
        type=_text(row[3], "type"),
        params=_json_column(row[4], "params", dict),
        meta=_json_column(row[5], "meta", dict),
        timeout_s=timeout_s,
        status=JobStatus(row[7]),
        version=_integer(row[8], "version"),
        progress=progress,
        attempt=_integer(row[10], "attempt"),
        created_at=_text(row[11], "created_at"),
        started_at=_text(row[12], "started_at", optional=True),
        updated_at=_text(row[13], "updated_at"),
        finished_at=_text(row[14], "finished_at", optional=True),
        error=error,
        params_json=row[4],
        meta_json=row[5],
        persisted=True,
        pgid=_process_group(row[16]),
        proc_start=row[17] if isinstance(row[17], str) else None,
    )


def _process_group(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else None


def _undecodable(row: Sequence[Any], exc: Exception) -> StoredJob:
    """A job whose row cannot be decoded, as a FAILED job saying so (what can be kept of the row is kept)."""
    reason = f"{type(exc).__name__}: {exc}"[:300]
    message = f"the job service could not decode this job's stored record ({reason}); it is reported FAILED and will not run"
    error = {"type": UNDECODABLE_ERROR_TYPE, "message": message}
    job_id = row[0] if isinstance(row[0], str) else str(row[0])
    version = row[8] if isinstance(row[8], int) and not isinstance(row[8], bool) else 0

    def text(value: Any, default: str | None) -> str | None:
        return value if isinstance(value, str) else default

    created_at = text(row[11], None) or "1970-01-01T00:00:00.000000Z"
    settled = row[7] == JobStatus.FAILED.value and _error_type(row[15]) == UNDECODABLE_ERROR_TYPE
    return StoredJob(
        id=job_id,
        key=text(row[1], None),
        fingerprint=text(row[2], "") or "",
        type=text(row[3], "unknown") or "unknown",
        params={},
        meta={},
        timeout_s=None,
        status=JobStatus.FAILED,
        version=version,
        progress=empty_progress(),
        attempt=row[10] if isinstance(row[10], int) and not isinstance(row[10], bool) else 1,
        created_at=created_at,
        started_at=text(row[12], None),
        updated_at=text(row[13], None) or created_at,
        finished_at=text(row[14], None) if settled else None,
        error=error,
        params_json="{}",
        meta_json="{}",
        persisted=True,
        needs_settling=not settled,
        pgid=_process_group(row[16]),
        proc_start=row[17] if isinstance(row[17], str) else None,
    )


def _error_type(value: Any) -> Any:
    try:
        error = loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return error.get("type") if isinstance(error, dict) else None
