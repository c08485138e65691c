"""The Ray Jobs REST API (Ray 2.x dashboard, ``/api/jobs/``), as pure request builders and parsers.

Behaviour verified against Ray 2.60 (see docs/dialects.md):

- The idempotency key becomes the ``submission_id``. Ray answers a duplicate with
  HTTP 500 and a text/plain traceback ending in "already exists"; that means
  "reattach", so the existing job is fetched instead.
- ``POST /api/jobs/`` and ``POST …/stop`` do not return a job record; the job is
  fetched after them.
- Error bodies are text/plain tracebacks; times are epoch milliseconds.
- There is no result endpoint and no log offset: results come from the job record
  or the last log line, and offsets are emulated by the client over the whole log.

Job types mean nothing to Ray: a job gives its shell ``entrypoint`` or an ``argv`` list, or
its type is mapped to a program by the connection (``dialect_options.job_types``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Self
from urllib.parse import quote

import pendulum

from jobservice_provider.core.dialects.base import (
    Dialect,
    FollowUp,
    ListQuery,
    Page,
    SubmitRequest,
    WholeLogs,
    classify_error,
    escape_path_value,
    last_json_line,
    text_error_detail,
    web_url,
)
from jobservice_provider.core.errors import (
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    JobServiceError,
    MalformedResponseError,
    body_excerpt,
)
from jobservice_provider.core.http import HttpRequest, HttpResponse
from jobservice_provider.core.job import Job, RemoteError
from jobservice_provider.core.status import JobStatus

STATUS_MAP: Mapping[str, JobStatus] = {
    "PENDING": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "STOPPED": JobStatus.CANCELLED,
    "SUCCEEDED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
}
# Submit fields of Ray's JobSubmitRequest that a job's params may set as they are.
RAY_OPTIONS = (
    "runtime_env",
    "entrypoint_num_cpus",
    "entrypoint_num_gpus",
    "entrypoint_memory",
    "entrypoint_resources",
    "entrypoint_label_selector",
)
# Our bookkeeping in Ray's metadata (str -> str), hidden from Job.meta.
META_PREFIX = "jobservice."
TYPE_KEY = META_PREFIX + "type"
RESULT_KEY = META_PREFIX + "result"
RESULT_FROM_LOG = "last_json_line"
# Characters Ray takes in a submission_id: it becomes a file name (job-driver-<id>.log),
# so "/" breaks the job; others are kept readable and made unique by a hash suffix.
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.:+=@-]")
MAX_SUBMISSION_ID = 180
JOB_TYPE_FIELDS = ("argv", "result_from_logs")


@dataclasses.dataclass(frozen=True)
class RayJobType:
    """A job type the connection maps to a program: ``argv``, then the job's params as one JSON argument.

    :param argv: the program and its first arguments (shell-quoted into Ray's entrypoint).
    :param result_from_logs: the result is the job's last log line, parsed as JSON.
    """

    argv: tuple[str, ...]
    result_from_logs: bool = False

    @classmethod
    def from_option(cls, name: str, value: Any) -> RayJobType:
        where = f"dialect_options.job_types.{name}"
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{where} must be an object with 'argv' (a list of strings) and 'result_from_logs'")
        unknown = sorted(set(value) - set(JOB_TYPE_FIELDS))
        if unknown:
            raise ConfigurationError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(JOB_TYPE_FIELDS)}")
        argv = value.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            raise ConfigurationError(f"{where}.argv must be a non-empty list of non-empty strings")
        result_from_logs = value.get("result_from_logs", False)
        if not isinstance(result_from_logs, bool):
            raise ConfigurationError(f"{where}.result_from_logs must be true or false")
        return cls(tuple(argv), result_from_logs)


def submission_id_for(key: str) -> str:
    """A Ray-safe ``submission_id`` for an idempotency key; the same key always gives the same id."""
    safe = _UNSAFE_ID.sub("_", key)
    if safe == key and len(key) <= MAX_SUBMISSION_ID:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{safe[: MAX_SUBMISSION_ID - 17]}-{digest}"


def _ms_time(value: Any, name: str) -> pendulum.DateTime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'{name}' must be epoch milliseconds, got {value!r}")
    return pendulum.from_timestamp(value / 1000, tz="UTC")


def _metadata(meta: Mapping[str, Any] | None) -> dict[str, str]:
    # Ray's metadata is str -> str: other values travel as JSON text.
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (meta or {}).items()}


def _bad(message: str) -> InvalidRequestError:
    return InvalidRequestError(f"ray dialect: {message}")


class RayDialect(Dialect, WholeLogs):
    """Speaks the Ray Jobs REST API of a Ray head's dashboard."""

    name = "ray"
    supports_idempotent_submit = True
    status_map = STATUS_MAP
    # No batch lookup: GET /api/jobs/ lists every job ever run, unpaged. No log offsets: the
    # whole log on every read. Listings are filtered on our side.

    def __init__(self, job_types: Mapping[str, RayJobType] | None = None) -> None:
        self.job_types: Mapping[str, RayJobType] = MappingProxyType(dict(job_types or {}))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """``{"job_types": {"<type>": {"argv": [...], "result_from_logs": bool}}}``, or nothing."""
        unknown = sorted(set(options) - {"job_types"})
        if unknown:
            raise ConfigurationError(f"the ray dialect's dialect_options take only 'job_types' (got {', '.join(unknown)})")
        job_types = options.get("job_types", {})
        if not isinstance(job_types, Mapping):
            raise ConfigurationError("dialect_options.job_types must be an object: job type -> {argv, result_from_logs}")
        return cls({str(name): RayJobType.from_option(str(name), value) for name, value in job_types.items()})

    # -- submit -----------------------------------------------------------------------------
    def submit(self, job: SubmitRequest) -> HttpRequest:
        if job.timeout_s is not None:
            raise _bad(
                "timeout_s cannot be enforced (Ray Jobs has no run-time limit); "
                "use the task's execution_timeout, which cancels the job when it fires"
            )
        job_type, idempotency_key = job.job_type, job.idempotency_key
        params = dict(job.params)
        options = {key: params.pop(key) for key in RAY_OPTIONS if key in params}
        metadata = _metadata(job.meta)
        if any(key.startswith(META_PREFIX) for key in metadata):
            raise _bad(f"meta keys starting with {META_PREFIX!r} are reserved")
        metadata[TYPE_KEY] = job_type
        if params.pop("result_from_logs", False) is True:
            metadata[RESULT_KEY] = RESULT_FROM_LOG
        mapped = self.job_types.get(job_type)
        if mapped is not None:
            # Every remaining param goes to the program: it validates them, not this dialect.
            entrypoint = shlex.join([*mapped.argv, json.dumps(params, separators=(",", ":"))])
            params = {}
            if mapped.result_from_logs:
                metadata[RESULT_KEY] = RESULT_FROM_LOG
        elif "entrypoint" in params:
            entrypoint = params.pop("entrypoint")
            if not isinstance(entrypoint, str) or not entrypoint.strip():
                raise _bad("param 'entrypoint' must be a non-empty shell command string")
        elif "argv" in params:
            entrypoint = self._argv(params, options)
        else:
            raise _bad(
                f"job type {job_type!r} needs param 'entrypoint' (the shell command Ray runs) or 'argv' "
                "(a program and its arguments), or a program for it in the connection's dialect_options.job_types"
            )
        if params:
            allowed = ", ".join(("entrypoint", "argv (with env, cwd)", "result_from_logs", *RAY_OPTIONS))
            raise _bad(f"unknown param(s) {', '.join(sorted(params))} for job type {job_type!r}; Ray takes {allowed}")
        body: dict[str, Any] = {"entrypoint": entrypoint, "metadata": metadata, **options}
        if idempotency_key:
            body["submission_id"] = submission_id_for(idempotency_key)
        return HttpRequest("POST", "/api/jobs/", json=body, idempotent=bool(idempotency_key))

    @staticmethod
    def _argv(params: dict[str, Any], options: dict[str, Any]) -> str:
        argv = params.pop("argv", None)
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            raise _bad("param 'argv' must be a non-empty list of strings (shell strings go in 'entrypoint')")
        command = shlex.join(argv)
        cwd = params.pop("cwd", None)
        if cwd is not None:
            if not isinstance(cwd, str) or not cwd:
                raise _bad("param 'cwd' must be a directory path")
            command = f"cd {shlex.quote(cwd)} && {command}"
        env = params.pop("env", None)
        if env is not None:
            if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
                raise _bad("param 'env' must be an object of strings")
            runtime_env = dict(options.get("runtime_env") or {})
            runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env}
            options["runtime_env"] = runtime_env
        return command

    def parse_submit(self, response: HttpResponse) -> FollowUp[Job]:
        data = response.json_object()
        submission_id = data.get("submission_id")
        if not isinstance(submission_id, str) or not submission_id:
            raise MalformedResponseError(f"Ray submit: no 'submission_id' in {body_excerpt(response.body)}")
        return FollowUp(self.get(submission_id), self.parse_job, submission_id)

    def reattach(self, response: HttpResponse, idempotency_key: str) -> FollowUp[Job] | None:
        if response.status in (400, 409, 500) and b"already exists" in response.body:
            submission_id = submission_id_for(idempotency_key)
            return FollowUp(self.get(submission_id), self.parse_job, submission_id)
        return None

    # -- lookups ----------------------------------------------------------------------------
    def get(self, job_id: str) -> HttpRequest:
        return HttpRequest("GET", f"/api/jobs/{escape_path_value(job_id)}")

    def parse_job(self, response: HttpResponse) -> Job:
        return self.job_from_json(response.json(), body=response.body)

    def job_from_json(self, data: Any, *, body: bytes | None = None) -> Job:
        """One Ray ``JobDetails`` object as a :class:`Job`."""
        try:
            if not isinstance(data, Mapping):
                raise ValueError("a Ray job must be a JSON object")
            job_id, raw_status = data["submission_id"], data["status"]
            if not isinstance(job_id, str) or not job_id:
                raise ValueError("'submission_id' must be a non-empty string")
            if not isinstance(raw_status, str):
                raise ValueError("'status' must be a string")
            metadata = data.get("metadata") or {}
            if not isinstance(metadata, Mapping):
                raise ValueError("'metadata' must be an object")
            status = self.map_status(raw_status)
            error = None
            if status in (JobStatus.FAILED, JobStatus.CANCELLED):
                error = RemoteError(type=str(data.get("error_type") or raw_status), message=str(data.get("message") or ""))
            return Job(
                id=job_id,
                status=status,
                raw_status=raw_status,
                type=metadata.get(TYPE_KEY),
                key=job_id,
                error=error,
                # Ray stamps start_time when the job is submitted, not when it starts running.
                created_at=_ms_time(data.get("start_time"), "start_time"),
                finished_at=_ms_time(data.get("end_time"), "end_time"),
                meta={k: v for k, v in metadata.items() if not str(k).startswith(META_PREFIX)},
            )
        except (KeyError, ValueError, TypeError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            excerpt = body_excerpt(body) if body is not None else body_excerpt(repr(data))
            raise MalformedResponseError(f"Malformed Ray job ({reason}): {excerpt}") from exc

    def list_jobs(self, query: ListQuery, *, page_size: int | None = None, cursor: str | None = None) -> HttpRequest:
        return HttpRequest("GET", "/api/jobs/")

    def parse_page(self, response: HttpResponse) -> Page:
        data = response.json()
        if not isinstance(data, list):
            raise MalformedResponseError(f"Ray job listing: expected a JSON array: {body_excerpt(response.body)}")
        # DRIVER entries (scripts that called ray.init() themselves) have no submission_id.
        return Page(
            [self.job_from_json(j, body=response.body) for j in data if isinstance(j, Mapping) and j.get("submission_id")], None
        )

    # -- cancel, result, logs, health -------------------------------------------------------
    def cancel(self, job_id: str) -> HttpRequest:
        return HttpRequest("POST", f"/api/jobs/{escape_path_value(job_id)}/stop")

    def parse_cancel(self, response: HttpResponse, job_id: str) -> FollowUp[Job]:
        # {"stopped": bool} only says whether a supervisor was alive; the job's status is the truth.
        return FollowUp(self.get(job_id), self.parse_job, job_id)

    def result(self, job_id: str) -> HttpRequest:
        return self.get(job_id)

    def parse_result(self, response: HttpResponse, job_id: str = "") -> Any:
        data = response.json_object()
        job = self.job_from_json(data, body=response.body)
        if job.status is not JobStatus.SUCCEEDED:
            raise ConflictError(f"Job {job.id} is {job.raw_status}; only a SUCCEEDED job has a result", status=409)
        metadata = data.get("metadata") or {}
        if metadata.get(RESULT_KEY) == RESULT_FROM_LOG:
            return FollowUp(self.whole_log(job.id), lambda r: last_json_line(self.parse_whole_log(r), f"Job {job.id}"), job.id)
        return {
            "submission_id": job.id,
            "status": job.raw_status,
            "message": data.get("message"),
            "driver_exit_code": data.get("driver_exit_code"),
            "start_time": data.get("start_time"),
            "end_time": data.get("end_time"),
            "metadata": dict(job.meta),
        }

    def whole_log(self, job_id: str) -> HttpRequest:
        return HttpRequest("GET", f"/api/jobs/{escape_path_value(job_id)}/logs")

    def parse_whole_log(self, response: HttpResponse) -> str:
        text = response.json_object().get("logs")
        if not isinstance(text, str):
            raise MalformedResponseError(f"Ray job logs: no 'logs' text in {body_excerpt(response.body)}")
        return text

    def health(self) -> HttpRequest:
        return HttpRequest("GET", "/api/version")

    def parse_health(self, response: HttpResponse) -> dict[str, Any]:
        data = response.json_object()
        return {"service": "Ray", "version": data.get("ray_version", "?"), "api": data.get("version", "?")}

    def job_url(self, job: Job, base_url: str) -> str | None:
        """The dashboard's page of the job (the connection's Base URL is the dashboard's address;
        its router takes the submission id after ``#/jobs/``)."""
        return web_url(f"/#/jobs/{quote(job.id, safe='')}", base_url)

    def error_for(self, response: HttpResponse, *, job_id: str | None = None) -> JobServiceError:
        detail = text_error_detail(response.body) or response.reason
        return classify_error(response, detail, job_id=job_id)
