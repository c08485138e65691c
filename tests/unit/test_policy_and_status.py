"""Pure pieces: status verdicts, poll and retry policies, job parsing, connection config."""

from __future__ import annotations

import json

import pytest

from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.errors import ConfigurationError, MalformedResponseError
from jobservice_provider.core.job import Job
from jobservice_provider.core.policy import PollPolicy, RetryPolicy
from jobservice_provider.core.status import FAILURE, SUCCESS, TERMINAL, JobStatus, WaitVerdict, parse_statuses, verdict


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (JobStatus.QUEUED, WaitVerdict.WAITING),
        (JobStatus.RUNNING, WaitVerdict.WAITING),
        (JobStatus.CANCELLING, WaitVerdict.WAITING),
        (JobStatus.SUCCEEDED, WaitVerdict.DONE),
        (JobStatus.FAILED, WaitVerdict.FAILED),
        (JobStatus.CANCELLED, WaitVerdict.FAILED),
        (None, WaitVerdict.WAITING),  # an unknown remote status never counts as success
    ],
)
def test_default_verdicts(status: JobStatus | None, expected: WaitVerdict) -> None:
    assert verdict(status) is expected


def test_terminal_sets_and_custom_targets() -> None:
    assert TERMINAL == SUCCESS | FAILURE == {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    # Waiting for RUNNING: reached when running, or passed by a job that already ended (issue 12).
    running = frozenset({JobStatus.RUNNING})
    assert verdict(JobStatus.RUNNING, running) is WaitVerdict.DONE
    assert verdict(JobStatus.SUCCEEDED, running, frozenset()) is WaitVerdict.DONE
    assert verdict(JobStatus.QUEUED, running) is WaitVerdict.WAITING


def test_parse_statuses_names_the_bad_one() -> None:
    assert parse_statuses(["succeeded", JobStatus.FAILED]) == {JobStatus.SUCCEEDED, JobStatus.FAILED}
    with pytest.raises(ValueError, match="'DONE'"):
        parse_statuses(["DONE"])


def test_poll_policy_jitter_bounds_and_first_delay() -> None:
    policy = PollPolicy(interval=10.0, jitter=0.2)
    assert policy.next_delay(rand=lambda: 0.0) == pytest.approx(8.0)
    assert policy.next_delay(rand=lambda: 0.5) == pytest.approx(10.0)
    assert policy.next_delay(rand=lambda: 0.999999) == pytest.approx(12.0, abs=1e-4)
    assert policy.first_delay(rand=lambda: 0.0) == 0.0
    assert policy.first_delay(rand=lambda: 0.5) == pytest.approx(5.0)
    # Retry-After wins and jitter only lengthens it.
    assert policy.next_delay(rand=lambda: 0.0, retry_after=30) == 30
    assert policy.next_delay(rand=lambda: 0.999, retry_after=30) == pytest.approx(35.994)


def test_poll_policy_grows_with_job_age_up_to_the_cap() -> None:
    policy = PollPolicy(interval=5.0, max_interval=60.0, jitter=0.0)
    assert policy.next_delay(job_age=10, rand=lambda: 0.5) == 5.0
    assert policy.next_delay(job_age=300, rand=lambda: 0.5) == 30.0
    assert policy.next_delay(job_age=36_000, rand=lambda: 0.5) == 60.0


def test_policy_validation_and_round_trip() -> None:
    policy = PollPolicy(interval=3, max_interval=30, jitter=0.1)
    assert PollPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    with pytest.raises(ConfigurationError, match="max_attempts"):
        PollPolicy.from_dict({"interval": 1, "max_attempts": 3})
    with pytest.raises(ConfigurationError, match="interval"):
        PollPolicy(interval=0)
    with pytest.raises(ConfigurationError, match="max_poll_interval"):
        PollPolicy(interval=10, max_interval=5)


def test_retry_policy_backoff_and_budget() -> None:
    retry = RetryPolicy(budget=600, base=1, cap=60, jitter=0.0)
    assert [retry.delay(n, rand=lambda: 0.5) for n in (1, 2, 3, 7, 8, 100)] == [1, 2, 4, 60, 60, 60]
    assert retry.delay(1, rand=lambda: 0.5, retry_after=12) == 12
    assert not retry.exhausted(failing_since=100.0, now=699.0)
    assert retry.exhausted(failing_since=100.0, now=700.0)


RECORD = {
    "id": "j_1",
    "key": "k",
    "type": "sleep",
    "status": "RUNNING",
    "version": 3,
    "attempt": 1,
    "progress": {"completed": 2, "total": 4, "message": "step 2/4"},
    "error": None,
    "created_at": "2026-11-28T10:00:00.000001Z",
    "started_at": "2026-11-28T10:00:01Z",
    "updated_at": "2026-11-28T10:00:02Z",
    "finished_at": None,
    "meta": {"owner": "me"},
}


def test_job_record_parses_and_summarises() -> None:
    job = Job.from_json(RECORD)
    assert job.status is JobStatus.RUNNING and job.version == 3
    assert job.progress is not None and job.progress.describe() == "2/4 (50%) step 2/4"
    assert job.started_at is not None and job.started_at.year == 2026
    summary = job.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["status"] == "RUNNING" and summary["meta"] == {"owner": "me"}


def test_unknown_remote_status_is_kept_not_guessed() -> None:
    job = Job.from_json({**RECORD, "status": "PREEMPTED"})
    assert job.status is None and job.raw_status == "PREEMPTED"
    assert verdict(job.status) is WaitVerdict.WAITING


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"status": "RUNNING"}, "missing field 'id'"),
        ({**RECORD, "version": "3"}, "'version' must be an integer"),
        ({**RECORD, "created_at": "yesterday"}, "'created_at' is not a timestamp"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_malformed_record_names_the_problem_and_quotes_the_body(record: object, reason: str) -> None:
    body = json.dumps(record).encode()
    with pytest.raises(MalformedResponseError, match=reason) as info:
        Job.from_json(record, body=body)
    assert body[:40].decode() in str(info.value)


def test_config_from_connection_fields() -> None:
    config = ServiceConfig.from_connection_fields(
        conn_id="svc",
        host="http://127.0.0.1:8765/",
        password="s3cret",
        extra={"verify_tls": False, "request_timeout": 5, "extra__jobservice__poll_interval": 2, "dialect": ""},
    )
    assert config.base_url == "http://127.0.0.1:8765"
    assert (config.verify_tls, config.request_timeout, config.poll_interval, config.dialect) == (False, 5, 2, "native")
    assert "s3cret" not in repr(config)
    # No scheme: TLS by default.
    assert (
        ServiceConfig.from_connection_fields(conn_id="x", host="jobs.example.com", port=9000).base_url
        == "https://jobs.example.com:9000"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": None}, "connection 'svc': host is empty"),
        ({"host": "ftp://x"}, "is not an http"),
        ({"extra": {"verify_ssl": False}}, "unknown extra 'verify_ssl'"),
        ({"extra": {"request_timeout": "fast"}}, "'request_timeout' must be int or float"),
        ({"extra": {"verify_tls": "yes"}}, "'verify_tls' must be bool"),
        ({"extra": {"dialect": "soap"}}, "extra 'dialect': unknown dialect 'soap'; installed dialects: native, ray, declarative"),
        ({"extra": "{not json"}, "extra is not valid JSON"),
        ({"extra": {"extra_headers": {"Authorization": "x"}}}, "password field"),
    ],
)
def test_config_errors_name_the_connection_and_field(fields: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"conn_id": "svc", "host": "http://h", **fields}
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        ServiceConfig.from_connection_fields(**kwargs)  # type: ignore[arg-type]
