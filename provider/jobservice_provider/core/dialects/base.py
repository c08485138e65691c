"""The dialect interface, and the pure pieces every dialect shares.

A dialect turns the generic job operations (submit, get, get many, list, cancel,
result, logs, health) into :class:`HttpRequest` values and reads the
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Self, TypeVar
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

    Capability flags tell the client what the service can do; where it cannot, the
    client makes up for it (single lookups instead of a batch, log offsets computed
    from the whole log, listing filters applied locally).
    """

    name: str = ""
    supports_batch_lookup: bool = False  # get_many exists
    supports_long_poll: bool = False  # get(wait_s=, seen=) blocks until the job changes
    supports_watch: bool = False  # watch(seen, wait_s) blocks until any of many jobs changes
    supports_idempotent_submit: bool = False  # a repeated submit with the same key yields the same job
    supports_logs: bool = False  # logs exist at all
    supports_log_offsets: bool = False  # logs can be read from an offset (else the whole log every time)
    supports_progress: bool = False  # job records carry progress
    supports_list_filters: bool = False  # list_jobs filters by status/type/creation on the service
    max_batch: int = 100
    max_watch: int = 0  # job ids one watch request may list
    # The service's status spelling -> ours; anything else is unknown (status None: keep waiting).
    status_map: Mapping[str, JobStatus] = {}

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
    def submit(
        self,
        job_type: str,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        meta: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> HttpRequest: ...

    def parse_submit(self, response: HttpResponse) -> Job | FollowUp[Job]:
        return self.parse_job(response)

    def reattach(self, response: HttpResponse, idempotency_key: str) -> FollowUp[Job] | None:
        """For a non-2xx submit response that means "this key's job already exists": how to fetch it."""
        return None

    # -- lookups ----------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, job_id: str, *, wait_s: float | None = None, seen: int | None = None) -> HttpRequest: ...

    @abc.abstractmethod
    def parse_job(self, response: HttpResponse) -> Job: ...

    def get_many(self, job_ids: Sequence[str]) -> HttpRequest:
        """A batch lookup of up to ``max_batch`` ids."""
        raise NotImplementedError(f"the {self.name} dialect has no batch lookup")

    def parse_many(self, response: HttpResponse, job_ids: Sequence[str] = ()) -> tuple[list[Job], list[str]]:
        raise NotImplementedError(f"the {self.name} dialect has no batch lookup")

    def watch(self, seen: Mapping[str, int], wait_s: float) -> HttpRequest:
        """A request answered once any job's version differs from ``seen`` (or after ``wait_s``)."""
        raise NotImplementedError(f"the {self.name} dialect has no watch")

    def parse_watch(self, response: HttpResponse) -> tuple[list[Job], list[str]]:
        """The changed jobs and the ids that no longer exist."""
        raise NotImplementedError(f"the {self.name} dialect has no watch")

    @abc.abstractmethod
    def list_jobs(
        self,
        *,
        status: Sequence[str] | None = None,
        job_type: str | None = None,
        created_after: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> HttpRequest: ...

    @abc.abstractmethod
    def parse_page(self, response: HttpResponse) -> Page: ...

    # -- cancel, result, logs, health -------------------------------------------------------
    @abc.abstractmethod
    def cancel(self, job_id: str) -> HttpRequest: ...

    def parse_cancel(self, response: HttpResponse, job_id: str) -> Job | FollowUp[Job]:
        return self.parse_job(response)

    @abc.abstractmethod
    def result(self, job_id: str) -> HttpRequest: ...

    @abc.abstractmethod
    def parse_result(self, response: HttpResponse, job_id: str = "") -> Any:
        """The job's result, or a :class:`FollowUp` that yields it."""

    def logs(self, job_id: str, offset: int = 0) -> HttpRequest:
        raise NotImplementedError(f"the {self.name} dialect has no logs")

    def parse_logs(self, response: HttpResponse) -> LogChunk:
        """A chunk from the requested offset; without offset support, the whole log as one chunk from 0."""
        raise NotImplementedError(f"the {self.name} dialect has no logs")

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


def last_json_line(text: str, where: str) -> Any:
    """The last non-empty line of ``text`` parsed as JSON (a job's way of printing its result)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise MalformedResponseError(f"{where}: the log is empty, so there is no result line")
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise MalformedResponseError(f"{where}: the last log line is not JSON: {body_excerpt(lines[-1])}") from None


def job_matches(
    job: Job,
    status: Sequence[str] | None = None,
    job_type: str | None = None,
    created_after: str | None = None,
) -> bool:
    """The listing filters, applied on our side for services that cannot filter.

    ``status`` uses our status names; a job whose status is unknown matches none.
    A job without a creation time never matches ``created_after``.
    """
    if status and (job.status is None or job.status.value not in {s.upper() for s in status}):
        return False
    if job_type and job.type != job_type:
        return False
    if created_after:
        after = pendulum.parse(created_after)
        if job.created_at is None or not isinstance(after, pendulum.DateTime) or not job.created_at > after:
            return False
    return True
