"""SQLite persistence of the local job service (WAL, short transactions)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from jobservice_local.models import StoredJob, dumps, loads
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
    result       TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at, id);
"""

_COLUMNS = (
    "id, key, fingerprint, type, params, meta, timeout_s, status, version, progress, attempt,"
    " created_at, started_at, updated_at, finished_at, error"
)

_INSERT = f"INSERT INTO jobs ({_COLUMNS}, result) VALUES ({', '.join('?' * 17)})"

_UPDATE = """
UPDATE jobs SET status = ?, version = ?, progress = ?, attempt = ?, started_at = ?, updated_at = ?,
    finished_at = ?, error = ?, result = COALESCE(?, result)
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
        """Open (and create) the database, refusing a second service on the same file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(str(self.path) + ".lock", "ab")  # noqa: SIM115 - held until close()
        if fcntl is not None:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock_file.close()
                raise StoreLockedError(f"another jobservice-local process is using {self.path}") from None
        self._lock_file = lock_file
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
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
        return StoredJob(
            id=row[0],
            key=row[1],
            fingerprint=row[2],
            type=row[3],
            params=loads(row[4]),
            meta=loads(row[5]),
            timeout_s=row[6],
            status=JobStatus(row[7]),
            version=row[8],
            progress=loads(row[9]),
            attempt=row[10],
            created_at=row[11],
            started_at=row[12],
            updated_at=row[13],
            finished_at=row[14],
            error=loads(row[15]) if row[15] is not None else None,
            params_json=row[4],
            meta_json=row[5],
            persisted=True,
        )

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


def log_dir_for(db_path: Path) -> Path:
    """Where the job logs of the database at ``db_path`` live."""
    return Path(os.fspath(db_path) + ".logs")
