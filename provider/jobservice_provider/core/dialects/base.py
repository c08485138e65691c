"""The dialect interface, and the pure pieces every dialect shares.

A dialect turns the generic job operations (submit, get, list, cancel, result, health,
and the optional capabilities: batch lookup, watch, logs) into :class:`HttpRequest` values and reads the
:class:`HttpResponse` values that come back. It never does I/O: the core client
sends what a dialect builds. When an answer needs a second request (Ray's submit
returns only an id; its result lives in the log), the parser returns a
:class:`FollowUp` saying which request to send next and how to read it.
"""

from __future__ import annotations

import abc
import dataclasses
import email.utils
import json
import math
import re
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, Self, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import pendulum

from jobservice_provider.core.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    JobNotFoundError,
    JobServiceError,
    MalformedResponseError,
    PermanentError,
    TransientError,
    body_excerpt,
)
from jobservice_provider.core.http import HttpRequest, HttpResponse
from jobservice_provider.core.job import Job
from jobservice_provider.core.status import JobStatus

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))


@dataclasses.dataclass(frozen=True)
class SubmitRequest:
    """One job to submit, as every layer passes it (hook → client → dialect).

    :param job_type: what kind of job (the service's name for it).
    :param params: the job's input.
    :param idempotency_key: a repeated submit with the same key yields the same job, where the
        service honours keys (a dialect with ``supports_idempotent_submit``).
    :param meta: labels stored with the job.
    :param timeout_s: a run-time limit the service enforces, where it can.
    """

    job_type: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    idempotency_key: str | None = None
    meta: Mapping[str, Any] | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.job_type, str) or not self.job_type:
            raise InvalidRequestError(f"job_type must be a non-empty string, got {self.job_type!r}")
        if not isinstance(self.params, Mapping):
            raise InvalidRequestError(f"params must be an object, got {type(self.params).__name__}")
        if self.meta is not None and not isinstance(self.meta, Mapping):
            raise InvalidRequestError(f"meta must be an object, got {type(self.meta).__name__}")
        if self.idempotency_key is not None and (not isinstance(self.idempotency_key, str) or not self.idempotency_key):
            raise InvalidRequestError(f"idempotency_key must be a non-empty string, got {self.idempotency_key!r}")


@dataclasses.dataclass(frozen=True)
class ListQuery:
    """Which jobs a listing asks for. ``status`` uses our status names; ``limit`` caps the total.

    A dialect sends what its service can filter on; the client checks every listed job with
    :meth:`matches` as well, so a service that filters less (or not at all) lists the same jobs.
    """

    status: Sequence[str] = ()  # kept as a tuple of upper-case names
    job_type: str | None = None
    created_after: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.status, str):  # one status given as a string, not a list of letters
            object.__setattr__(self, "status", (self.status,))
        object.__setattr__(self, "status", tuple(s.upper() for s in self.status))
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
            raise InvalidRequestError(f"limit must be a positive integer, got {self.limit!r}")
        if self.created_after is not None:
            try:
                after = pendulum.parse(self.created_after) if isinstance(self.created_after, str) else None
            except Exception:  # pendulum raises its own ParserError (a ValueError) and others
                after = None
            if not isinstance(after, pendulum.DateTime):
                raise InvalidRequestError(f"created_after must be an ISO 8601 date-time, got {self.created_after!r}")

    def matches(self, job: Job) -> bool:
        """Whether ``job`` passes the filters; a job whose status is unknown matches no ``status``,
        one without a creation time no ``created_after``."""
        if self.status and (job.status is None or job.status.value not in self.status):
            return False
        if self.job_type and job.type != self.job_type:
            return False
        if self.created_after:
            after = pendulum.parse(self.created_after)
            if job.created_at is None or not isinstance(after, pendulum.DateTime) or not job.created_at > after:
                return False
        return True


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of a job listing."""

    jobs: list[Job]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True)
class LogChunk:
    """Log text from byte ``offset`` up to ``next_offset``; ``complete`` once the job ended and all was read.

    Offsets count bytes of the remote log. ``data`` is for display: a service shows invalid
    UTF-8 as U+FFFD, so its re-encoded length need not be ``next_offset - offset``.
    With ``records``, the log is a list of records and offsets count them: ``data`` holds
    whole records, one line each (ending in a line break).
    """

    data: str
    offset: int
    next_offset: int
    complete: bool
    records: bool = False


@dataclasses.dataclass(frozen=True)
class FollowUp(Generic[T]):
    """A further request an answer depends on, and how to read its response.

    :param request: what to send next.
    :param parse: reads the (2xx) response; may return another follow-up.
    :param job_id: the job the request is about, so a 404 becomes :class:`JobNotFoundError`.
    """

    request: HttpRequest
    parse: Callable[[HttpResponse], T | FollowUp[T]]
    job_id: str | None = None


class Dialect(abc.ABC):
    """How one kind of job service is spoken to: pure request builders and response parsers.

    Every dialect submits, looks up, lists, cancels and fetches results. What only some services
    can do is an optional capability: a dialect that has one also implements its protocol
    (:class:`BatchLookup`, :class:`Watch`, :class:`OffsetLogs` or :class:`WholeLogs`), and the
    client checks for it; where a dialect has none, the client makes up for it (single lookups
    instead of a batch, offsets counted over the whole log, no log at all).

    A dialect of another package is registered under the entry point group
    ``jobservice_provider.dialects`` (name = the connection's ``dialect`` extra, value = the class).
    """

    name: str = ""
    # A repeated submit with the same idempotency key yields the same job: a submit may then be
    # retried after a transient error (otherwise it is sent once: a lost answer may hide a job).
    supports_idempotent_submit: bool = False
    # The service's status spelling -> ours; anything else is unknown (status None: keep waiting).
    status_map: Mapping[str, JobStatus] = {}
    # Seconds a job's log may still grow after the job ended (a service storing its last lines
    # late): the task's final log copy reads on until the log has not grown for this long.
    log_settle_s: float = 0.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """The dialect configured by the connection's ``dialect_options``; by default it takes none."""
        if options:
            raise ConfigurationError(f"the {cls.name} dialect takes no dialect_options (got {', '.join(map(repr, options))})")
        return cls()

    def map_status(self, raw: str) -> JobStatus | None:
        return self.status_map.get(raw)

    # -- submit -----------------------------------------------------------------------------
    @abc.abstractmethod
    def submit(self, job: SubmitRequest) -> HttpRequest: ...

    def parse_submit(self, response: HttpResponse) -> Job | FollowUp[Job]:
        return self.parse_job(response)

    def reattach(self, response: HttpResponse, idempotency_key: str) -> FollowUp[Job] | None:
        """For a non-2xx submit response that means "this key's job already exists": how to fetch it."""
        return None

    # -- lookups ----------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, job_id: str) -> HttpRequest: ...

    @abc.abstractmethod
    def parse_job(self, response: HttpResponse) -> Job: ...

    @abc.abstractmethod
    def list_jobs(self, query: ListQuery, *, page_size: int | None = None, cursor: str | None = None) -> HttpRequest:
        """One page of the listing: the filters the service can apply, at most ``page_size`` jobs, from ``cursor``."""

    @abc.abstractmethod
    def parse_page(self, response: HttpResponse) -> Page: ...

    # -- cancel, result, health -------------------------------------------------------------
    @abc.abstractmethod
    def cancel(self, job_id: str) -> HttpRequest: ...

    def parse_cancel(self, response: HttpResponse, job_id: str) -> Job | FollowUp[Job]:
        return self.parse_job(response)

    @abc.abstractmethod
    def result(self, job_id: str) -> HttpRequest: ...

    @abc.abstractmethod
    def parse_result(self, response: HttpResponse, job_id: str = "") -> Any:
        """The job's result, or a :class:`FollowUp` that yields it."""

    @abc.abstractmethod
    def health(self) -> HttpRequest: ...

    @abc.abstractmethod
    def parse_health(self, response: HttpResponse) -> dict[str, Any]:
        """At least ``service``; ``version`` and ``api`` where known."""

    @abc.abstractmethod
    def error_for(self, response: HttpResponse, *, job_id: str | None = None) -> JobServiceError:
        """The error a non-2xx response stands for."""

    # -- the job's page for people ----------------------------------------------------------
    def job_url(self, job: Job, base_url: str) -> str | None:
        """The URL of ``job``'s page in the service's web UI (``base_url``: the connection's),
        or None when the service has none: then no link is shown."""
        return None


# -- optional capabilities: a dialect that has one implements its protocol ------------------------
@typing.runtime_checkable
class BatchLookup(Protocol):
    """Many jobs looked up in one request (up to ``max_batch`` ids)."""

    max_batch: int

    def get_many(self, job_ids: Sequence[str]) -> HttpRequest: ...

    def parse_many(self, response: HttpResponse, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        """The records found and the ids the service says do not exist."""
        ...


@typing.runtime_checkable
class Watch(Protocol):
    """One request answered once any of many jobs changes (the native ``POST /v1/watch``)."""

    max_watch: int

    def watch(self, seen: Mapping[str, int], wait_s: float) -> HttpRequest:
        """Answered once a job's version differs from ``seen`` (or after ``wait_s`` seconds)."""
        ...

    def parse_watch(self, response: HttpResponse) -> tuple[list[Job], list[str]]:
        """The changed jobs and the ids that no longer exist."""
        ...


@typing.runtime_checkable
class OffsetLogs(Protocol):
    """A job's log read from a byte offset, with the next offset and whether it is complete."""

    def logs(self, job_id: str, offset: int) -> HttpRequest: ...

    def parse_logs(self, response: HttpResponse) -> LogChunk: ...


@typing.runtime_checkable
class WholeLogs(Protocol):
    """A job's whole log on every read; the client counts offsets over it (:func:`slice_log`)."""

    def whole_log(self, job_id: str) -> HttpRequest: ...

    def parse_whole_log(self, response: HttpResponse) -> str: ...


@typing.runtime_checkable
class RecordLogs(Protocol):
    """A job's log kept as a list of records, one line each, read a page at a time.

    Offsets count records. A page shorter than ``log_page_size`` (or, paged by cursor, one with
    no next cursor) means the reader caught up with the log as it is now; the client decides
    from the job's status whether it is complete. Paged by cursor (``log_cursor_paging``), a
    page is asked for by the cursor the previous page's response gave (None: the first page),
    and the client keeps the cursor of each page start it has seen.
    """

    log_page_size: int
    log_cursor_paging: bool

    def log_records(self, job_id: str, offset: int, cursor: str | None = None) -> HttpRequest:
        """The page of records from record ``offset`` on, or (paged by cursor) the page ``cursor`` names."""
        ...

    def parse_log_records(self, response: HttpResponse, offset: int) -> RecordPage:
        """Each record's line from record ``offset`` on (a service that sends every record is sliced here)."""
        ...


@dataclasses.dataclass(frozen=True)
class RecordPage:
    """One page of a record log: each record's line, and the cursor of the page after it (paged by cursor)."""

    lines: list[str]
    next_cursor: str | None = None


# -- shared pure helpers ------------------------------------------------------------------------
def escape_path_value(value: Any, what: str = "job id") -> str:
    """One URL path segment: ``/``, ``?``, ``#``, ``..`` and the rest percent-encoded."""
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{what} must be a non-empty string, got {value!r}")
    return quote(value, safe="")


# Characters a URL may carry as they are (RFC 3986 reserved, and "%" of escapes already made);
# anything else (spaces, quotes, angle brackets, non-ASCII) is percent-encoded.
_URL_SAFE = ":/?#[]@!$&()*+,;=%~"


def web_url(reference: Any, base_url: str) -> str | None:
    """A web page's URL as an extra link may show it, or None when ``reference`` is not one.

    ``reference`` is an absolute ``http(s)`` URL, or a path starting with ``/``, appended to
    ``base_url`` as API paths are. Other schemes (``javascript:``, ``data:``) and URLs with
    user info are refused; characters with no place in a URL are percent-encoded.
    """
    if not isinstance(reference, str) or not reference.strip() or any(not c.isprintable() for c in reference):
        return None
    reference = reference.strip()
    url = base_url.rstrip("/") + reference if reference.startswith("/") and not reference.startswith("//") else reference
    try:
        parts = urlsplit(quote(url, safe=_URL_SAFE))
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return urlunsplit(parts)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP-date), or None.

    Negative, non-finite (``inf``, ``nan``) and unparsable values are ignored (None): the
    retry policy then backs off as usual. A date in the past means "now" (0).
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_error(
    response: HttpResponse,
    detail: str,
    *,
    job_id: str | None = None,
    problem: Mapping[str, Any] | None = None,
) -> JobServiceError:
    """The error class for a non-2xx status, the same for every dialect."""
    status = response.status
    where = f"{response.url}: " if response.url else ""
    message = f"{where}HTTP {status}: {detail}"
    if status in TRANSIENT_STATUSES:
        return TransientError(message, status=status, retry_after=parse_retry_after(response.headers.get("retry-after")))
    if 300 <= status < 400:
        # The client never follows a redirect (allow_redirects=False): following one would send
        # the bearer token to whatever host Location names. The user moves the Base URL instead.
        location = response.headers.get("location")
        target = f"redirects to {shown_location(location)}" if location else "redirects, without a Location header"
        return PermanentError(
            f"{where}HTTP {status}: the service {target}; redirects are not followed, so the API token never goes to "
            "another address: if the service has moved, set the connection's Base URL to its new address",
            status=status,
            problem=problem,
        )
    if status in (401, 403):
        return AuthenticationError(message, status=status, problem=problem)
    if status == 404 and job_id is not None:
        return JobNotFoundError(job_id, f"Job {job_id} not found: {message}", problem=problem)
    if status == 409:
        return ConflictError(message, status=status, problem=problem)
    if status in (400, 413, 422):
        return InvalidRequestError(message, status=status, problem=problem)
    return PermanentError(message, status=status, problem=problem)


def shown_location(location: str) -> str:
    """A ``Location`` header as a message may show it: no user info, query or fragment (a
    pre-signed URL's signature lives there), no control characters, at most 200 characters."""
    cleaned = "".join(c if c.isprintable() else "\ufffd" for c in location.strip())
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return body_excerpt(cleaned)
    netloc = parts.netloc.rpartition("@")[2]
    origin = f"{parts.scheme + ':' if parts.scheme else ''}//{netloc}" if netloc else ""
    shown = origin + parts.path
    if parts.query or parts.fragment:
        shown += " (query omitted)"
    return body_excerpt(shown)


def text_error_detail(body: bytes) -> str:
    """What a plain-text error body says: the last line of a traceback, else its start."""
    text = body.decode("utf-8", errors="replace").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and line.strip() != "."]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        return body_excerpt(lines[-1])
    return body_excerpt(text)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def slice_log(text: str, offset: int, *, complete: bool) -> LogChunk:
    """Offsets emulated over a service that only returns the whole log.

    The log is the UTF-8 encoding of ``text`` and offsets count its bytes, as with the
    native API; every dialect that returns a whole log reads it through here. A lone
    surrogate (a JSON ``"\\udcff"``) has no UTF-8 encoding: it counts as the U+FFFD it
    is shown as. An offset inside a character moves forward to the next character; one
    past the end (a log that shrank, e.g. after the service restarted) reads nothing.
    """
    raw = _LONE_SURROGATE.sub("\ufffd", text).encode()
    start = min(max(offset, 0), len(raw))
    while start < len(raw) and raw[start] & 0xC0 == 0x80:
        start += 1
    return LogChunk(raw[start:].decode("utf-8", errors="replace"), start, len(raw), complete)


RESULT_LINE_HINT = "the result is the job's last log line as JSON: end the job with print(json.dumps(result))"


def last_json_line(text: str, where: str) -> Any:
    """The last non-empty line of ``text`` parsed as JSON (a job's way of printing its result)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise MalformedResponseError(f"{where}: the log is empty, so there is no result line ({RESULT_LINE_HINT})")
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise MalformedResponseError(
            f"{where}: the last log line is not JSON: {body_excerpt(lines[-1])} ({RESULT_LINE_HINT})"
        ) from None
