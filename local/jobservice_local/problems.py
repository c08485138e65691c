"""RFC 9457 problem details: the one shape of every error the local service returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:jobservice:problem:"

#: slug -> title; the titles are stable, the ``detail`` says what exactly went wrong.
TITLES: dict[str, str] = {
    "unauthorized": "Unauthorized",
    "host-not-allowed": "Host not allowed",
    "cross-origin-request": "Cross-origin request refused",
    "unsupported-media-type": "Request body must be JSON",
    "invalid-request": "Invalid request",
    "unknown-job-type": "Unknown job type",
    "job-type-disabled": "Job type disabled",
    "invalid-params": "Invalid job parameters",
    "idempotency-key-reused": "Idempotency key reused with a different request",
    "job-not-found": "Job not found",
    "job-not-succeeded": "Job has not succeeded",
    "too-many-ids": "Too many job ids",
    "payload-too-large": "Request body too large",
    "uri-too-long": "Request line too long",
    "header-fields-too-large": "Request header fields too large",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "service-unavailable": "Service unavailable",
    "internal-error": "Internal server error",
}

#: slugs used when aiohttp itself raises an HTTP error.
SLUG_BY_STATUS: dict[int, str] = {
    400: "invalid-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    414: "uri-too-long",
    431: "header-fields-too-large",
    503: "service-unavailable",
}


class Problem(Exception):
    """An error to be answered as ``application/problem+json``.

    :param status: the HTTP status code.
    :param slug: the last part of the problem type URN (a key of :data:`TITLES`).
    :param detail: what went wrong, for a human.
    :param headers: extra response headers (e.g. ``WWW-Authenticate``).
    :param extra: extra members of the problem object (e.g. ``job_id``).
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The problem object."""
        return problem_body(self.status, self.slug, self.detail, **self.extra)


def problem_body(status: int, slug: str, detail: str, **extra: Any) -> dict[str, Any]:
    """Build a problem object for ``slug``."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": TITLES.get(slug, slug.replace("-", " ").capitalize()),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


def invalid_request(detail: str, **extra: Any) -> Problem:
    """400 ``invalid-request``."""
    return Problem(400, "invalid-request", detail, **extra)


def invalid_params(detail: str, **extra: Any) -> Problem:
    """422 ``invalid-params``."""
    return Problem(422, "invalid-params", detail, **extra)


def job_not_found(job_id: str) -> Problem:
    """404 ``job-not-found``."""
    return Problem(404, "job-not-found", f"no job with id {job_id!r}", job_id=job_id)
