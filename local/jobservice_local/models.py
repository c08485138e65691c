"""The job record of the local service, its timestamps and JSON helpers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jobservice_local.status import JobStatus

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

#: the keys of a job record, in the order the API returns them.
RECORD_FIELDS: tuple[str, ...] = (
    "id",
    "key",
    "type",
    "params",
    "status",
    "version",
    "progress",
    "attempt",
    "created_at",
    "started_at",
    "updated_at",
    "finished_at",
    "error",
    "meta",
    "timeout_s",
    "links",
)
#: where a job's page for people is, relative to the service's base URL (``links.web``).
JOB_PAGE_PATH = "/ui/jobs/{id}"

CANCELLED_ERROR = {"type": "Cancelled", "message": "cancelled by request"}
UNDECODABLE_ERROR_TYPE = "UndecodableRecord"
RESTARTED_ERROR = {
    "type": "ServiceRestarted",
    "message": "the job service restarted while this job was running; the job's work was lost",
}


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z`` (fixed width, so it sorts as text)."""
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an offset; raise ``ValueError`` otherwise."""
    parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return parsed.astimezone(UTC)


class TimestampClock:
    """Wall-clock timestamps that never go backwards within one process.

    ``created_at`` orders the job listing and the queue, so two jobs submitted
    one after the other must never get decreasing timestamps even if the system
    clock is stepped back. (Formatting is cached per second: this runs on every
    change of every job.)
    """

    def __init__(self) -> None:
        self._last_us = 0
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        """The current time, strictly after every earlier value of this clock."""
        micros = max(time.time_ns() // 1000, self._last_us + 1)
        self._last_us = micros
        second, fraction = divmod(micros, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{fraction:06d}Z"


def new_job_id() -> str:
    """A fresh job id: ``j_`` and 32 hex digits."""
    return "j_" + uuid.uuid4().hex


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON, refusing NaN and infinities (they are not JSON)."""
    return _ENCODER.encode(value)


#: most levels of nested arrays and objects in any JSON this service reads (a request body counts as 1).
MAX_JSON_DEPTH = 64
#: integers must fit in 64 bits (what SQLite, Go and Java clients can hold).
MIN_JSON_INT, MAX_JSON_INT = -(2**63), 2**63 - 1
_MAX_INT_CHARS = len(str(MIN_JSON_INT))


class JsonLimitError(ValueError):
    """JSON that is valid but beyond one of this service's limits.

    :param message: what is wrong, naming the limit.
    :param limit: the limit's name (``max_depth``, ``integer_range``, ``finite_numbers``).
    :param value: the limit's value, for the problem answer.
    """

    def __init__(self, message: str, limit: str, value: Any) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value


def _reject_constant(name: str) -> Any:
    raise JsonLimitError(f"{name} is not a JSON number (numbers must be finite)", "finite_numbers", True)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonLimitError(f"the number {text[:40]} is too large for a double (numbers must be finite)", "finite_numbers", True)
    return value


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_CHARS or not MIN_JSON_INT <= (value := int(text)) <= MAX_JSON_INT:
        shown = text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"
        raise JsonLimitError(
            f"the integer {shown} is out of range; integers must be from {MIN_JSON_INT} to {MAX_JSON_INT}",
            "integer_range",
            [MIN_JSON_INT, MAX_JSON_INT],
        )
    return value


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _too_deep(limit: int) -> JsonLimitError:
    return JsonLimitError(f"arrays and objects nest more than {limit} levels deep (limit: {limit})", "max_depth", limit)


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strict, bounded JSON parsing: no NaN/Infinity, finite numbers, 64-bit integers, at most ``max_depth`` levels.

    Raises ``ValueError`` (a :class:`JsonLimitError` for a limit) and never ``RecursionError``:
    whatever this returns can be encoded again, so nothing stored can later break a read.
    """
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float, parse_int=_parse_int)
    except RecursionError:
        raise _too_deep(max_depth) from None
    if json_depth_exceeds(value, max_depth):
        raise _too_deep(max_depth)
    return value


def request_fingerprint(job_type: str, params: Any, meta: Any, timeout_s: float | None) -> str:
    """A digest of the canonical JSON of a submission, to compare idempotent retries."""
    canonical = json.dumps(
        {"type": job_type, "params": params, "meta": meta, "timeout_s": timeout_s},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def empty_progress() -> dict[str, Any]:
    """The progress of a job that has reported nothing yet."""
    return {"completed": 0, "total": None, "message": None}


@dataclasses.dataclass(slots=True)
class StoredJob:
    """One job, as kept in memory and in SQLite."""

    id: str
    key: str | None
    type: str
    params: dict[str, Any]
    meta: dict[str, Any]
    timeout_s: float | None
    fingerprint: str
    status: JobStatus
    version: int
    progress: dict[str, Any]
    attempt: int
    created_at: str
    started_at: str | None
    updated_at: str
    finished_at: str | None
    error: dict[str, str] | None
    #: ``params`` and ``meta`` as JSON text (they never change after submission).
    params_json: str
    meta_json: str
    #: the result as JSON text; ``None`` while there is none (or when not loaded).
    result_json: str | None = None
    #: the process group of a ``python``/``command`` job (its leader's pid) and when that leader
    #: started (``orphans.start_marker``): what a restart after a crash needs to stop it safely.
    pgid: int | None = None
    proc_start: str | None = None
    #: whether the row exists in SQLite (then only the mutable columns are written).
    persisted: bool = False
    #: read from a row that could not be decoded and not yet recorded as FAILED because of it.
    needs_settling: bool = False

    def record(self) -> dict[str, Any]:
        """The job record exactly as the API returns it."""
        return {
            "id": self.id,
            "key": self.key,
            "type": self.type,
            "params": self.params,
            "status": self.status.value,
            "version": self.version,
            "progress": dict(self.progress),
            "attempt": self.attempt,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "error": dict(self.error) if self.error is not None else None,
            "meta": self.meta,
            "timeout_s": self.timeout_s,
            "links": {"web": JOB_PAGE_PATH.format(id=quote(self.id, safe=""))},
        }
