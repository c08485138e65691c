"""The job record, parsed once from the service's JSON."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pendulum

from jobservice_provider.core.errors import MalformedResponseError, body_excerpt
from jobservice_provider.core.status import JobStatus


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """How far a job has come, as the service reports it."""

    completed: float = 0
    total: float | None = None
    message: str | None = None

    def describe(self) -> str:
        """``3/10 (30%) loading shards``; only the parts the service reported."""
        parts = []
        if self.total:
            parts.append(f"{_num(self.completed)}/{_num(self.total)} ({100 * self.completed / self.total:.0f}%)")
        elif self.completed:
            parts.append(_num(self.completed))
        if self.message:
            parts.append(self.message)
        return " ".join(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class RemoteError:
    """The error the service recorded for a failed or cancelled job."""

    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One remote job.

    ``status`` is ``None`` when the service reported a status we do not know
    (kept verbatim in ``raw_status``); a wait treats that as still running.
    """

    id: str
    status: JobStatus | None
    raw_status: str
    type: str | None = None
    key: str | None = None
    version: int | None = None
    attempt: int | None = None
    progress: Progress | None = None
    error: RemoteError | None = None
    created_at: pendulum.DateTime | None = None
    started_at: pendulum.DateTime | None = None
    updated_at: pendulum.DateTime | None = None
    finished_at: pendulum.DateTime | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: the record's ``links`` (native API): relation -> URL, e.g. ``web``, the job's page for people.
    links: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, *, body: bytes | str | None = None) -> Job:
        """Parse a native job record.

        :param data: the decoded JSON object.
        :param body: the raw body, quoted in the error when the record is malformed.
        """
        try:
            if not isinstance(data, Mapping):
                raise ValueError("a job record must be a JSON object")
            job_id = data["id"]
            raw_status = data["status"]
            if not isinstance(job_id, str) or not job_id:
                raise ValueError("'id' must be a non-empty string")
            if not isinstance(raw_status, str):
                raise ValueError("'status' must be a string")
            try:
                status: JobStatus | None = JobStatus(raw_status.upper())
            except ValueError:
                status = None
            progress = data.get("progress")
            error = data.get("error")
            meta = data.get("meta") or {}
            if not isinstance(meta, Mapping):
                raise ValueError("'meta' must be an object")
            return cls(
                id=job_id,
                status=status,
                raw_status=raw_status,
                type=data.get("type"),
                key=data.get("key"),
                version=_opt_int(data.get("version"), "version"),
                attempt=_opt_int(data.get("attempt"), "attempt"),
                progress=_progress(progress),
                error=RemoteError(type=str(error.get("type", "Error")), message=str(error.get("message", "")))
                if isinstance(error, Mapping)
                else None,
                created_at=_opt_time(data.get("created_at"), "created_at"),
                started_at=_opt_time(data.get("started_at"), "started_at"),
                updated_at=_opt_time(data.get("updated_at"), "updated_at"),
                finished_at=_opt_time(data.get("finished_at"), "finished_at"),
                meta=dict(meta),
                links=_links(data.get("links")),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            excerpt = body_excerpt(body) if body is not None else body_excerpt(repr(data))
            raise MalformedResponseError(f"Malformed job record ({reason}): {excerpt}") from exc

    def summary(self) -> dict[str, Any]:
        """A small JSON-safe dict for trigger events, XCom and logs."""
        return {
            "id": self.id,
            "status": self.status.value if self.status else self.raw_status,
            "type": self.type,
            "version": self.version,
            "attempt": self.attempt,
            "progress": dataclasses.asdict(self.progress) if self.progress else None,
            "error": dataclasses.asdict(self.error) if self.error else None,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "meta": dict(self.meta),
        }


def _links(value: Any) -> dict[str, str]:
    """``links`` as far as it is usable: the string members of an object. Links only decorate a
    record (a page to show people), so a service's odd ``links`` never fails a wait."""
    if not isinstance(value, Mapping):
        return {}
    return {str(name): url for name, url in value.items() if isinstance(url, str) and url}


def _progress(value: Any) -> Progress | None:
    """``progress`` checked field by field: numbers are numbers, the message is text."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("'progress' must be an object")
    completed = _opt_number(value.get("completed"), "progress.completed")
    total = _opt_number(value.get("total"), "progress.total")
    message = value.get("message")
    if message is not None and not isinstance(message, str):
        raise ValueError("'progress.message' must be a string")
    return Progress(completed=completed or 0, total=total, message=message)


def _opt_number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"'{name}' must be a finite number, got {value!r}")
    return value


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _opt_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"'{name}' must be an integer")
    return value


def _opt_time(value: Any, name: str) -> pendulum.DateTime | None:
    if value is None:
        return None
    try:
        # The C ISO parser is ten times faster than pendulum.parse, which matters when a
        # triggerer parses thousands of records a minute; pendulum.parse takes the rest.
        parsed: object = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        try:
            parsed = pendulum.parse(value)
        except Exception as exc:
            raise ValueError(f"'{name}' is not a timestamp: {value!r}") from exc
    if not isinstance(parsed, datetime) or parsed.tzinfo is None:
        raise ValueError(f"'{name}' is not a date-time with a time zone: {value!r}")
    if isinstance(parsed, pendulum.DateTime):
        return parsed
    if parsed.utcoffset() == timedelta(0):
        return pendulum.DateTime(
            parsed.year,
            parsed.month,
            parsed.day,
            parsed.hour,
            parsed.minute,
            parsed.second,
            parsed.microsecond,
            tzinfo=pendulum.UTC,
        )
    return pendulum.instance(parsed)


def _iso(value: pendulum.DateTime | None) -> str | None:
    return value.isoformat() if value else None
