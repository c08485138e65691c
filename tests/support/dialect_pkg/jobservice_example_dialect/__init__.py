"""A dialect written the way a team outside this project would write one.

It uses only the public dialect interface (``jobservice_provider.core.dialects``) and speaks the
job API of ``jobservice-local`` its own way: every job it submits carries a ``meta`` label
saying so (the tests read it back to prove this dialect, not the built-in one, did the work),
and it offers one optional capability, the batch lookup, by implementing its protocol. It has
no logs, so the client shows none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from jobservice_provider.core.dialects import BatchLookup, Dialect, ListQuery, Page, SubmitRequest
from jobservice_provider.core.dialects.base import classify_error
from jobservice_provider.core.errors import ConfigurationError, JobServiceError, MalformedResponseError
from jobservice_provider.core.http import HttpRequest, HttpResponse
from jobservice_provider.core.job import Job

LABEL = "submitted_by"


class ExampleDialect(Dialect, BatchLookup):
    """jobservice-local's v1 API, spoken by a third-party package.

    ``dialect_options``: ``{"label": "<text>"}`` (default ``"example dialect"``), the value of the
    ``submitted_by`` meta label on every job it submits.
    """

    name = "example"
    supports_idempotent_submit = True
    max_batch = 20

    def __init__(self, label: str = "example dialect") -> None:
        self.label = label

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ExampleDialect:
        unknown = sorted(set(options) - {"label"})
        if unknown:
            raise ConfigurationError(f"the example dialect takes only 'label' (got {', '.join(unknown)})")
        label = options.get("label", "example dialect")
        if not isinstance(label, str) or not label:
            raise ConfigurationError("dialect_options.label must be a non-empty string")
        return cls(label)

    def submit(self, job: SubmitRequest) -> HttpRequest:
        body = {"type": job.job_type, "params": dict(job.params), "meta": {**(job.meta or {}), LABEL: self.label}}
        key = job.idempotency_key
        return HttpRequest(
            "POST", "/v1/jobs", json=body, headers=(("Idempotency-Key", key),) if key else (), idempotent=bool(key)
        )

    def get(self, job_id: str) -> HttpRequest:
        return HttpRequest("GET", "/v1/jobs/" + quote(job_id, safe=""))

    def parse_job(self, response: HttpResponse) -> Job:
        return Job.from_json(response.json(), body=response.body)

    def get_many(self, job_ids: Sequence[str]) -> HttpRequest:
        return HttpRequest("GET", "/v1/jobs", params=tuple(("id", job_id) for job_id in job_ids))

    def parse_many(self, response: HttpResponse, job_ids: Sequence[str]) -> tuple[list[Job], list[str]]:
        data = response.json_object()
        if not isinstance(data.get("jobs"), list) or not isinstance(data.get("missing"), list):
            raise MalformedResponseError("example dialect: a batch answer needs 'jobs' and 'missing' lists")
        return [Job.from_json(record) for record in data["jobs"]], [str(job_id) for job_id in data["missing"]]

    def list_jobs(self, query: ListQuery, *, page_size: int | None = None, cursor: str | None = None) -> HttpRequest:
        # Filters only by type on the service; the client applies the rest of the query.
        params = [("type", query.job_type)] if query.job_type else []
        if cursor:
            params.append(("cursor", cursor))
        return HttpRequest("GET", "/v1/jobs", params=tuple(params))

    def parse_page(self, response: HttpResponse) -> Page:
        data = response.json_object()
        return Page([Job.from_json(record) for record in data.get("jobs", [])], data.get("next_cursor"))

    def cancel(self, job_id: str) -> HttpRequest:
        return HttpRequest("POST", "/v1/jobs/" + quote(job_id, safe="") + "/cancel")

    def result(self, job_id: str) -> HttpRequest:
        return HttpRequest("GET", "/v1/jobs/" + quote(job_id, safe="") + "/result")

    def parse_result(self, response: HttpResponse, job_id: str = "") -> Any:
        return response.json_object().get("result")

    def health(self) -> HttpRequest:
        return HttpRequest("GET", "/v1/health")

    def parse_health(self, response: HttpResponse) -> dict[str, Any]:
        return {"service": "jobservice-local via the example dialect", **response.json_object()}

    def error_for(self, response: HttpResponse, *, job_id: str | None = None) -> JobServiceError:
        try:
            detail = str(response.json_object().get("detail") or response.reason)
        except MalformedResponseError:
            detail = response.reason
        return classify_error(response, detail, job_id=job_id)
