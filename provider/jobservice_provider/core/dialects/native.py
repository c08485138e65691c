"""The native Job Service HTTP API v1 (docs/openapi.yaml), as pure request builders and parsers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobservice_provider.core.dialects.base import (
    TRANSIENT_STATUSES,
    BatchLookup,
    Dialect,
    ListQuery,
    LogChunk,
    OffsetLogs,
    Page,
    SubmitRequest,
    Watch,
    classify_error,
    escape_path_value,
    parse_retry_after,
    web_url,
)
from jobservice_provider.core.errors import (
    InvalidRequestError,
    JobServiceError,
    MalformedResponseError,
    body_excerpt,
)
from jobservice_provider.core.http import HttpRequest, HttpResponse
from jobservice_provider.core.job import Job
from jobservice_provider.core.status import JobStatus

__all__ = ["MAX_BATCH", "MAX_WATCH", "TRANSIENT_STATUSES", "LogChunk", "NativeDialect", "Page", "parse_retry_after"]

MAX_BATCH = 100
MAX_WATCH = 10_000


def _job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{escape_path_value(job_id)}{suffix}"


class NativeDialect(Dialect, BatchLookup, Watch, OffsetLogs):
    """Speaks the provider's own v1 API: batch lookups, the watch and offset logs included."""

    name = "native"
    supports_idempotent_submit = True
    max_batch = MAX_BATCH
    max_watch = MAX_WATCH
    # Job.from_json maps the native spelling (case-insensitively) with this same table.
    status_map: Mapping[str, JobStatus] = {status.value: status for status in JobStatus}

    # -- requests ---------------------------------------------------------------------------
    def submit(self, job: SubmitRequest) -> HttpRequest:
        body: dict[str, Any] = {"type": job.job_type, "params": dict(job.params)}
        if job.meta:
            body["meta"] = dict(job.meta)
        if job.timeout_s is not None:
            body["timeout_s"] = job.timeout_s
        key = job.idempotency_key
        return HttpRequest(
            "POST", "/v1/jobs", json=body, headers=(("Idempotency-Key", key),) if key else (), idempotent=bool(key)
        )

    def get(self, job_id: str) -> HttpRequest:
        return HttpRequest("GET", _job_path(job_id))

    def get_many(self, job_ids: Sequence[str]) -> HttpRequest:
        if not 0 < len(job_ids) <= MAX_BATCH:
            raise InvalidRequestError(f"a batch lookup takes 1 to {MAX_BATCH} job ids, got {len(job_ids)}")
        return HttpRequest("GET", "/v1/jobs", params=tuple(("id", j) for j in job_ids))

    def watch(self, seen: Mapping[str, int], wait_s: float) -> HttpRequest:
        if not 0 < len(seen) <= MAX_WATCH:
            raise InvalidRequestError(f"a watch takes 1 to {MAX_WATCH} job ids, got {len(seen)}")
        return HttpRequest("POST", "/v1/watch", json={"seen": dict(seen), "wait_s": wait_s})

    def list_jobs(self, query: ListQuery, *, page_size: int | None = None, cursor: str | None = None) -> HttpRequest:
        params: list[tuple[str, str]] = [("status", s) for s in query.status]
        if query.job_type:
            params.append(("type", query.job_type))
        if query.created_after:
            params.append(("created_after", query.created_after))
        if page_size:
            params.append(("limit", str(page_size)))
        if cursor:
            params.append(("cursor", cursor))
        return HttpRequest("GET", "/v1/jobs", params=tuple(params))

    def cancel(self, job_id: str) -> HttpRequest:
        return HttpRequest("POST", _job_path(job_id, "/cancel"))

    def result(self, job_id: str) -> HttpRequest:
        return HttpRequest("GET", _job_path(job_id, "/result"))

    def logs(self, job_id: str, offset: int) -> HttpRequest:
        return HttpRequest("GET", _job_path(job_id, "/logs"), params=(("offset", str(offset)),))

    def health(self) -> HttpRequest:
        return HttpRequest("GET", "/v1/health")

    # -- responses --------------------------------------------------------------------------
    def parse_job(self, response: HttpResponse) -> Job:
        return Job.from_json(response.json(), body=response.body)

    def parse_many(self, response: HttpResponse, job_ids: Sequence[str] = ()) -> tuple[list[Job], list[str]]:
        data = response.json_object()
        jobs, missing = data.get("jobs"), data.get("missing", [])
        if not isinstance(jobs, list) or not isinstance(missing, list):
            raise MalformedResponseError(f"batch lookup: expected 'jobs' and 'missing' lists: {body_excerpt(response.body)}")
        return [Job.from_json(j, body=response.body) for j in jobs], [str(m) for m in missing]

    def parse_watch(self, response: HttpResponse) -> tuple[list[Job], list[str]]:
        return self.parse_many(response)

    def parse_page(self, response: HttpResponse) -> Page:
        data = response.json_object()
        jobs, cursor = data.get("jobs"), data.get("next_cursor")
        if not isinstance(jobs, list) or not (cursor is None or isinstance(cursor, str)):
            raise MalformedResponseError(f"job listing: expected 'jobs' list and 'next_cursor': {body_excerpt(response.body)}")
        return Page([Job.from_json(j, body=response.body) for j in jobs], cursor)

    def parse_result(self, response: HttpResponse, job_id: str = "") -> Any:
        data = response.json_object()
        if "result" not in data:
            raise MalformedResponseError(f"job result: no 'result' member: {body_excerpt(response.body)}")
        return data["result"]

    def parse_logs(self, response: HttpResponse) -> LogChunk:
        data = response.json_object()
        try:
            return LogChunk(
                data=str(data["data"]),
                offset=int(data["offset"]),
                next_offset=int(data["next_offset"]),
                complete=bool(data["complete"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponseError(f"job logs: {exc!r} in {body_excerpt(response.body)}") from exc

    def parse_health(self, response: HttpResponse) -> dict[str, Any]:
        return response.json_object()

    def job_url(self, job: Job, base_url: str) -> str | None:
        """The record's ``links.web`` (absolute, or a path under the base URL)."""
        return web_url(job.links.get("web"), base_url)

    def error_for(self, response: HttpResponse, *, job_id: str | None = None) -> JobServiceError:
        """The error a non-2xx response stands for, classified by status code."""
        problem: dict[str, Any] = {}
        if response.headers.get("content-type", "").split(";")[0].strip() in ("application/problem+json", "application/json"):
            try:
                decoded = response.json()
                problem = decoded if isinstance(decoded, dict) else {}
            except MalformedResponseError:
                problem = {}
        detail = problem.get("detail") or problem.get("title") or body_excerpt(response.body) or response.reason
        return classify_error(response, detail, job_id=job_id, problem=problem)
