"""The error taxonomy shared by the client, the hook, the trigger and the operators.

::

    JobServiceError                     anything this package raises about the service
    ├── TransientError                  may succeed if tried again (5xx, 408, 429, timeouts, resets, DNS)
    ├── PermanentError                  will not succeed if repeated; fix the request or the connection
    │   ├── AuthenticationError         401 / 403: the token is missing, wrong or lacks rights
    │   ├── JobNotFoundError            404 for a job id
    │   ├── ConflictError               409 (idempotency key reused with another body, job not succeeded…)
    │   ├── InvalidRequestError         400 / 413 / 422: the service rejected what we sent
    │   ├── MalformedResponseError      the service answered 2xx with a body we cannot read
    │   └── ConfigurationError          the connection or an operator argument is invalid
    ├── JobFailedError                  the remote job ended FAILED or CANCELLED
    └── JobTimeoutError                 our deadline passed before the job finished
        └── JobStaleError               the job stayed RUNNING without any change for stale_after

Errors are classified by type and status code where they are raised, never by
parsing ``str(exc)`` later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BODY_EXCERPT_BYTES = 200


def body_excerpt(body: bytes | str | None) -> str:
    """The first 200 bytes of a response body, for error messages."""
    if body is None:
        return ""
    raw = body.encode() if isinstance(body, str) else body
    text = raw[:BODY_EXCERPT_BYTES].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > BODY_EXCERPT_BYTES else "")


class JobServiceError(Exception):
    """Base of every error about the remote job service."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientError(JobServiceError):
    """A failure that may go away when the same call is tried again later.

    :param status: HTTP status, or ``None`` for transport failures.
    :param retry_after: seconds the service asked us to wait (``Retry-After``), if any.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class PermanentError(JobServiceError):
    """A failure that repeating the same call will not fix.

    :param status: HTTP status, when the error came from a response.
    :param problem: the RFC 9457 problem document the service sent, if any.
    """

    hint = ""  # what the user should fix; subclasses say it

    def __init__(self, message: str, *, status: int | None = None, problem: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})

    def in_connection(self, conn_id: str | None) -> PermanentError:
        """Name the connection and what to fix in the message (once); returns ``self``."""
        if not conn_id or getattr(self, "_named_connection", False):
            return self
        self._named_connection = True
        if repr(conn_id) not in self.message:
            self.message = f"Connection {conn_id!r}: {self.message}"
        if self.hint:
            self.message += f" ({self.hint.format(conn_id=conn_id)})"
        self.args = (self.message,)
        return self


class AuthenticationError(PermanentError):
    """401 or 403."""

    hint = "check the API token (password) of connection {conn_id!r} and what it may do"


class JobNotFoundError(PermanentError):
    """The service does not know the job id."""

    def __init__(self, job_id: str, message: str, *, status: int | None = 404, problem: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, status=status, problem=problem)
        self.job_id = job_id


class ConflictError(PermanentError):
    """409: the request conflicts with the job's state or an earlier request."""


class InvalidRequestError(PermanentError):
    """400, 413 or 422: the service rejected the request as invalid."""

    hint = "the service rejected the request; check the task's job type and parameters"


class MalformedResponseError(PermanentError):
    """A successful response whose body is not what the API promises."""


class ConfigurationError(PermanentError):
    """The connection or an argument is invalid; the message names the field."""

    hint = "fix the connection {conn_id!r} in Admin > Connections"


class JobFailedError(JobServiceError):
    """The remote job ended in a failure status (or a terminal status a wait could not use).

    Raised by :meth:`WaitResult.raise_for_outcome` (the hook's waits) and, as Airflow
    exceptions that are also this class, by the operator and the sensor when the job they
    wait for fails: ``except JobFailedError`` catches those.

    :param job_id: the remote job id.
    :param status: the terminal status (``FAILED``, ``CANCELLED``, …) as a string.
    :param remote_error: the error the service reported for the job, if any.
    :param message: the message, if not the default ``Job <id> ended <status>: <error>``.
    """

    def __init__(self, job_id: str, status: str, remote_error: str | None = None, message: str | None = None) -> None:
        detail = f": {remote_error}" if remote_error else ""
        super().__init__(message or f"Job {job_id} ended {status}{detail}")
        self.job_id = job_id
        self.status = status
        self.remote_error = remote_error


class JobTimeoutError(JobServiceError):
    """Our deadline passed before the job reached a target status.

    Raised by :meth:`WaitResult.raise_for_outcome`; the operator raises Airflow's own
    ``AirflowTaskTimeout`` (so Airflow treats it as a timeout) *from* one of these.
    """

    def __init__(self, job_id: str, last_status: str | None, message: str | None = None) -> None:
        super().__init__(message or f"Timed out waiting for job {job_id} (last status {last_status})")
        self.job_id = job_id
        self.last_status = last_status


class JobStaleError(JobTimeoutError):
    """The job stayed RUNNING with no change to its record for ``stale_after``: it hangs. Waits
    treat it as a timeout of its own (the operator then cancels with ``cancel_on_timeout``)."""
