"""The ray dialect's pure parts: request building, status map, parsing, errors, results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pendulum
import pytest
from tests.ray.local_job_types import LOCAL_JOB_TYPES_ON_RAY

from jobservice_provider.core.dialects import BatchLookup, FollowUp, OffsetLogs, RayDialect, SubmitRequest, WholeLogs, get_dialect
from jobservice_provider.core.dialects.ray import RESULT_KEY, TYPE_KEY, submission_id_for
from jobservice_provider.core.errors import (
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    JobNotFoundError,
    MalformedResponseError,
    TransientError,
)
from jobservice_provider.core.http import HttpResponse
from jobservice_provider.core.status import JobStatus

RAY = RayDialect()
# Real Ray 2.60 answers (docs: ../shared/reference/job-services.md §1.3).
SUCCEEDED = {
    "type": "SUBMISSION",
    "job_id": None,
    "submission_id": "raysubmit_R2BQLtXuVdSAkQyu",
    "driver_info": None,
    "status": "SUCCEEDED",
    "entrypoint": 'python -c "print(1)"',
    "message": "Job finished successfully.",
    "error_type": None,
    "start_time": 1795519255862,
    "end_time": 1795519257998,
    "metadata": {"jobservice.type": "shell", "owner": "ml", "jobservice.result": "last_json_line"},
    "runtime_env": None,
    "driver_exit_code": 0,
}
FAILED = {
    **SUCCEEDED,
    "status": "FAILED",
    "message": "Job entrypoint command failed with exit code 3, last available logs (truncated to 20,000 chars):\nboom\n",
    "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR",
    "driver_exit_code": 3,
    "metadata": None,
}
DUPLICATE_BODY = b"""Traceback (most recent call last):
  File ".../job_head.py", line 419, in submit_job
RuntimeError: Request failed with status code 400: Traceback (most recent call last):
ValueError: Job with submission_id my-fixed-id-1 already exists. Please use a different submission_id.
"""


def response(status: int, body: Any, content_type: str = "application/json") -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status=status, headers={"content-type": content_type}, body=raw, url="GET http://ray/api/jobs/x")


def test_registered_with_job_types_as_its_only_option() -> None:
    assert isinstance(get_dialect("ray"), RayDialect)
    with pytest.raises(ConfigurationError, match="take only 'job_types' \\(got x\\)"):
        get_dialect("ray", {"x": 1})
    for job_types, message in [
        ([], "job_types must be an object"),
        ({"sleep": "python x.py"}, "job_types.sleep must be an object"),
        ({"sleep": {"argv": "python x.py"}}, "job_types.sleep.argv must be a non-empty list"),
        ({"sleep": {"argv": ["python", ""]}}, "job_types.sleep.argv must be a non-empty list"),
        ({"sleep": {"argv": ["python"], "result_from_logs": "yes"}}, "job_types.sleep.result_from_logs"),
        ({"sleep": {"argv": ["python"], "shell": True}}, "job_types.sleep: unknown field\\(s\\) shell"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            get_dialect("ray", {"job_types": job_types})
    assert isinstance(RAY, WholeLogs) and not isinstance(RAY, BatchLookup | OffsetLogs) and RAY.supports_idempotent_submit


def test_entrypoint_submit_maps_key_meta_and_ray_options() -> None:
    request = RAY.submit(
        SubmitRequest(
            "train",
            {"entrypoint": "python train.py", "runtime_env": {"pip": ["x"]}, "entrypoint_num_cpus": 1, "result_from_logs": True},
            idempotency_key="airflow:d:t:manual__2026-01-01T00:00:00+00:00:-1",
            meta={"owner": "ml", "n": 3},
        )
    )
    assert (request.method, request.path, request.idempotent) == ("POST", "/api/jobs/", True)
    assert request.json == {
        "entrypoint": "python train.py",
        "submission_id": "airflow:d:t:manual__2026-01-01T00:00:00+00:00:-1",
        "runtime_env": {"pip": ["x"]},
        "entrypoint_num_cpus": 1,
        "metadata": {"owner": "ml", "n": "3", TYPE_KEY: "train", RESULT_KEY: "last_json_line"},
    }
    assert "submission_id" not in RAY.submit(SubmitRequest("x", {"entrypoint": "true"})).json
    assert not RAY.submit(SubmitRequest("x", {"entrypoint": "true"})).idempotent


def test_argv_is_quoted_and_maps_env_and_cwd_whatever_the_job_type() -> None:
    body = RAY.submit(
        SubmitRequest(
            "anything",
            {
                "argv": ["echo", "a b", "$HOME;rm -rf /"],
                "env": {"K": "v"},
                "cwd": "/tmp/my dir",
                "runtime_env": {"env_vars": {"A": "1"}},
            },
        )
    ).json
    assert body["entrypoint"] == "cd '/tmp/my dir' && echo 'a b' '$HOME;rm -rf /'"
    assert body["runtime_env"] == {"env_vars": {"A": "1", "K": "v"}}
    assert RESULT_KEY not in body["metadata"]


@pytest.mark.parametrize(
    ("job_type", "params", "message"),
    [
        ("train", {}, "needs param 'entrypoint'"),
        ("train", {"entrypoint": ""}, "non-empty shell command"),
        ("train", {"entrypoint": "x", "bogus": 1, "other": 2}, "unknown param\\(s\\) bogus, other"),
        ("command", {"argv": "echo hi"}, "'argv' must be a non-empty list"),
        ("command", {"argv": ["echo"], "env": {"K": 1}}, "'env' must be an object of strings"),
        # The local service's job types mean nothing to the ray dialect itself.
        ("sleep", {"seconds": 1}, "job type 'sleep' needs param 'entrypoint'"),
        ("python", {"callable": "json:dumps"}, "job type 'python' needs param 'entrypoint'"),
    ],
)
def test_bad_params_are_rejected_before_sending(job_type: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        RAY.submit(SubmitRequest(job_type, params))


def test_timeout_and_reserved_meta_are_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="timeout_s cannot be enforced"):
        RAY.submit(SubmitRequest("x", {"entrypoint": "true"}, timeout_s=5))
    with pytest.raises(InvalidRequestError, match="reserved"):
        RAY.submit(SubmitRequest("x", {"entrypoint": "true"}, meta={"jobservice.type": "y"}))


def run_entrypoint(entrypoint: str, link_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run an entrypoint the way Ray does (/bin/sh -c), with this interpreter as ``python``."""
    if not (link_dir / "python").exists():
        (link_dir / "python").symlink_to(sys.executable)
    env = {
        **os.environ,
        "PATH": f"{link_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    return subprocess.run(["/bin/sh", "-c", entrypoint], capture_output=True, text=True, env=env, timeout=60)


def test_a_mapped_job_type_runs_its_program_with_the_params_as_json(tmp_path: Path) -> None:
    ray = get_dialect("ray", LOCAL_JOB_TYPES_ON_RAY)
    body = ray.submit(
        SubmitRequest("sleep", {"seconds": 0.01, "steps": 2, "result": {"a": "it's"}, "runtime_env": {"pip": ["x"]}})
    ).json
    assert body["metadata"] == {TYPE_KEY: "sleep", RESULT_KEY: "last_json_line"}
    assert body["runtime_env"] == {"pip": ["x"]}  # Ray's own options still pass through
    done = run_entrypoint(body["entrypoint"], tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines() == ["step 1/2", "step 2/2", '{"a": "it\'s"}'], done
    failed = run_entrypoint(ray.submit(SubmitRequest("sleep", {"seconds": 0, "fail": "disk full"})).json["entrypoint"], tmp_path)
    assert failed.returncode == 1 and "disk full" in failed.stderr
    plain = get_dialect("ray", {"job_types": {"echo": {"argv": ["echo"]}}}).submit(SubmitRequest("echo", {"x": 1})).json
    assert plain["entrypoint"] == "echo '{\"x\":1}'" and RESULT_KEY not in plain["metadata"]


def test_submission_ids_are_safe_and_stable() -> None:
    assert submission_id_for("airflow:d:t:run+1:-1") == "airflow:d:t:run+1:-1"
    odd = submission_id_for("airflow:d:t:scheduled/2026 01:-1")
    assert "/" not in odd and " " not in odd and odd == submission_id_for("airflow:d:t:scheduled/2026 01:-1")
    assert odd != submission_id_for("airflow:d:t:scheduled_2026_01:-1")  # the hash keeps keys apart
    assert len(submission_id_for("k" * 500)) <= 180


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("PENDING", JobStatus.QUEUED),
        ("RUNNING", JobStatus.RUNNING),
        ("STOPPED", JobStatus.CANCELLED),
        ("SUCCEEDED", JobStatus.SUCCEEDED),
        ("FAILED", JobStatus.FAILED),
        ("SUSPENDED", None),
    ],
)
def test_status_map(raw: str, ours: JobStatus | None) -> None:
    job = RAY.parse_job(response(200, {**SUCCEEDED, "status": raw}))
    assert (job.status, job.raw_status) == (ours, raw)


def test_parse_job_reads_times_meta_and_errors() -> None:
    job = RAY.parse_job(response(200, SUCCEEDED))
    assert job.id == job.key == "raysubmit_R2BQLtXuVdSAkQyu" and job.type == "shell" and job.error is None
    assert job.meta == {"owner": "ml"}
    assert job.created_at == pendulum.datetime(2026, 11, 24, 11, 20, 55, 862000, tz="UTC")
    assert job.finished_at is not None and (job.finished_at - job.created_at).total_seconds() == pytest.approx(2.136)
    failed = RAY.parse_job(response(200, FAILED))
    assert failed.error is not None and failed.error.type == "JOB_ENTRYPOINT_COMMAND_ERROR" and "boom" in failed.error.message
    stopped = RAY.parse_job(response(200, {**SUCCEEDED, "status": "STOPPED", "message": "Job was intentionally stopped."}))
    assert stopped.error is not None and str(stopped.error) == "STOPPED: Job was intentionally stopped."


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({**SUCCEEDED, "submission_id": None}, "'submission_id' must be a non-empty string"),
        ({**SUCCEEDED, "start_time": "yesterday"}, "'start_time' must be epoch milliseconds"),
        ({"status": "RUNNING"}, "missing field 'submission_id'"),
    ],
)
def test_malformed_job_names_the_problem(record: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedResponseError, match=reason):
        RAY.parse_job(response(200, record))


def test_submit_and_cancel_fetch_the_job_afterwards() -> None:
    follow = RAY.parse_submit(response(200, {"job_id": "a/b", "submission_id": "a/b"}))
    assert isinstance(follow, FollowUp) and follow.request.path == "/api/jobs/a%2Fb" and follow.job_id == "a/b"
    cancel = RAY.cancel("x y")
    assert (cancel.method, cancel.path) == ("POST", "/api/jobs/x%20y/stop")
    after = RAY.parse_cancel(response(200, {"stopped": True}), "x y")
    assert isinstance(after, FollowUp) and after.request.path == "/api/jobs/x%20y"


def test_duplicate_submission_reattaches() -> None:
    key = "airflow:d:t:scheduled/2026:-1"
    follow = RAY.reattach(response(500, DUPLICATE_BODY, "text/plain"), key)
    assert isinstance(follow, FollowUp) and follow.job_id == submission_id_for(key)
    assert RAY.reattach(response(500, b"500 Internal Server Error\n\nServer got itself in trouble", "text/plain"), key) is None


def test_text_errors_are_classified_and_quote_the_exception() -> None:
    missing = RAY.error_for(response(404, b"Job nope-123 does not exist", "text/plain"), job_id="nope-123")
    assert isinstance(missing, JobNotFoundError) and "Job nope-123 does not exist" in str(missing)
    duplicate = RAY.error_for(response(500, DUPLICATE_BODY, "text/plain"))
    assert isinstance(duplicate, TransientError) and "already exists" in str(duplicate) and "Traceback" not in str(duplicate)
    bad = b"Traceback (most recent call last):\n  ...\nTypeError: __init__() got an unexpected keyword argument 'bogus'\n"
    rejected = RAY.error_for(response(400, bad, "text/plain"))
    assert isinstance(rejected, InvalidRequestError) and "unexpected keyword argument 'bogus'" in str(rejected)


def test_result_is_the_last_json_log_line_or_a_summary() -> None:
    follow = RAY.parse_result(response(200, SUCCEEDED), SUCCEEDED["submission_id"])
    assert isinstance(follow, FollowUp) and follow.request.path.endswith("/logs")
    assert follow.parse(response(200, {"logs": 'Running entrypoint\nworking\n{"auc": 0.9}\n\n'})) == {"auc": 0.9}
    with pytest.raises(MalformedResponseError, match="last log line is not JSON: done"):
        follow.parse(response(200, {"logs": "working\ndone\n"}))
    plain = {**SUCCEEDED, "metadata": {"owner": "ml"}}
    assert RAY.parse_result(response(200, plain)) == {
        "submission_id": "raysubmit_R2BQLtXuVdSAkQyu",
        "status": "SUCCEEDED",
        "message": "Job finished successfully.",
        "driver_exit_code": 0,
        "start_time": 1795519255862,
        "end_time": 1795519257998,
        "metadata": {"owner": "ml"},
    }
    with pytest.raises(ConflictError, match="is FAILED; only a SUCCEEDED job has a result"):
        RAY.parse_result(response(200, FAILED))


def test_logs_listing_and_health() -> None:
    assert RAY.parse_whole_log(response(200, {"logs": "é\nline\n"})) == "é\nline\n"
    driver = {"type": "DRIVER", "job_id": "01000000", "submission_id": None, "status": "SUCCEEDED"}
    page = RAY.parse_page(response(200, [SUCCEEDED, driver]))
    assert [j.id for j in page.jobs] == ["raysubmit_R2BQLtXuVdSAkQyu"] and page.next_cursor is None
    assert RAY.parse_health(response(200, {"version": "4", "ray_version": "2.60.0"})) == {
        "service": "Ray",
        "version": "2.60.0",
        "api": "4",
    }
