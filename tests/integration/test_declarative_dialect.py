"""The declarative dialect against an in-house-style job API with its own JSON shapes and statuses.

The service below is written the way platform teams write theirs: runs, not jobs; states
``waiting/busy/ok/broken/stopping/stopped``; progress as ``done``/``of``; errors as
``{"error": {"reason": …}}``. Nothing in it knows about this provider. The connection's
spec is the worked example of docs/dialects.md, read from the doc itself.

Runs advance one step per status read (single or batch), so tests are deterministic without sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from tests.conftest import REPO, conn_json
from tests.support.airflow_context import make_context
from tests.support.dag_test import run_trigger

from jobservice_provider.core.dialects import ListQuery, SubmitRequest
from jobservice_provider.core.errors import AuthenticationError, ConfigurationError, InvalidRequestError, JobNotFoundError
from jobservice_provider.core.policy import PollPolicy
from jobservice_provider.core.status import TERMINAL, JobStatus
from jobservice_provider.core.wait import Outcome, WaitSpec, wait_for_job
from jobservice_provider.hooks.jobservice import JobServiceHook
from jobservice_provider.operators.jobservice import CancelJobOperator, SubmitAndWaitOperator
from jobservice_provider.triggers.jobservice import JobStatusTrigger

pytestmark = pytest.mark.integration
TOKEN = "inhouse-token"
PIPELINES = {"export", "import"}
STATES_DONE = {"ok", "broken", "stopped"}


def doc_spec(name: str) -> dict[str, Any]:
    text = (REPO / "docs" / "dialects.md").read_text()
    match = re.search(rf"<!-- spec:{name} -->\s*```json\n(.*?)\n```", text, re.S)
    assert match, f"docs/dialects.md has no spec:{name} block"
    spec: dict[str, Any] = json.loads(match.group(1))
    return spec


# "done when JSON field X equals Y": exports have no status, only a phase and an ok flag.
EXPORTS_SPEC = {
    "name": "exports API",
    "operations": {
        "submit": {"path": "/exports", "body": {"table": "{params.table}"}, "id": "id"},
        "get": {"path": "/exports/{job_id}"},
    },
    "record": {"id": "id", "status": "phase == 'finished' && (ok && 'good' || 'bad') || 'running'", "result": "{rows: rows}"},
    "status_map": {"running": "RUNNING", "good": "SUCCEEDED", "bad": "FAILED"},
}


class InHouseService:
    """The foreign API, on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.exports: dict[int, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.ids = itertools.count(1)
        self.requests: list[str] = []
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="inhouse-service", daemon=True)

    # -- the API -------------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": {"reason": "bad token"}}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    def _run(self, request: web.Request) -> dict[str, Any]:
        run = self.runs.get(request.match_info["run_id"])
        if run is None:
            raise web.HTTPNotFound(text=json.dumps({"error": {"reason": "unknown run"}}), content_type="application/json")
        return run

    @staticmethod
    def _public(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run.items() if not k.startswith("_")}

    @staticmethod
    def _advance(run: dict[str, Any]) -> None:
        args = run["_args"]
        if run["state"] == "stopping":
            run["state"] = "stopped"
        elif run["state"] == "waiting":
            run["state"], run["note"] = "busy", "starting"
            run["_log"].append("started")
        elif run["state"] == "busy" and args.get("pause", 0) > run["_paused"]:
            run["state"] = "paused"
        elif run["state"] == "paused":
            run["_paused"] += 1
            run["state"] = "busy" if run["_paused"] >= args["pause"] else "paused"
        elif run["state"] == "busy" and not args.get("hold"):
            run["done"] += 1
            run["note"] = f"step {run['done']}"
            run["_log"].append(f"step {run['done']}/{run['of']} ✓")
            if run["done"] >= run["of"]:
                if args.get("fail"):
                    run["state"], run["problem"] = "broken", args["fail"]
                else:
                    run["state"], run["_output"] = "ok", args.get("output", {"rows": run["of"]})

    async def submit(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Team") != "data-eng":
            return web.json_response({"error": {"reason": "X-Team header missing"}}, status=400)
        body = await request.json()
        if body.get("pipeline") not in PIPELINES:
            return web.json_response({"error": {"reason": f"no such pipeline {body.get('pipeline')!r}"}}, status=422)
        key = body.get("dedupe_key")
        if key and key in self.by_key:
            return web.json_response({"run": self._public(self.runs[self.by_key[key]])})
        run_id = f"r-{next(self.ids)}"
        args = body.get("args") or {}
        self.runs[run_id] = {
            "run_id": run_id,
            "state": "waiting",
            "pipeline": body["pipeline"],
            "done": 0,
            "of": args.get("steps", 3),
            "note": None,
            "problem": None,
            "submitted": datetime.now(UTC).isoformat(),
            "labels": body.get("labels"),
            "_args": args,
            "_log": [],
            "_paused": 0,
        }
        if key:
            self.by_key[key] = run_id
        return web.json_response({"run": self._public(self.runs[run_id])}, status=201)

    async def get(self, request: web.Request) -> web.Response:
        run = self._run(request)
        self._advance(run)
        return web.json_response(self._public(run))

    async def find(self, request: web.Request) -> web.Response:
        ids = request.query.getall("id", [])
        if ids:
            found = [self.runs[i] for i in ids if i in self.runs]
            for run in found:
                self._advance(run)
            return web.json_response({"items": [self._public(run) for run in found]})
        page = int(request.query.get("page", "0"))
        runs = list(self.runs.values())[page * 2 : page * 2 + 2]
        more = len(self.runs) > page * 2 + 2
        return web.json_response({"items": [self._public(r) for r in runs], "next_page": str(page + 1) if more else None})

    async def cancel(self, request: web.Request) -> web.Response:
        run = self._run(request)
        if run["state"] not in STATES_DONE:
            run["state"] = "stopping"
        return web.json_response({}, status=202)

    async def output(self, request: web.Request) -> web.Response:
        run = self._run(request)
        if run["state"] != "ok":
            return web.json_response({"error": {"reason": f"run is {run['state']}"}}, status=409)
        return web.json_response({"output": run["_output"]})

    async def log(self, request: web.Request) -> web.Response:
        run = self._run(request)
        raw = "".join(f"{line}\n" for line in run["_log"]).encode()
        start = int(request.query.get("from", "0"))
        text = raw[start:].decode()
        return web.json_response({"text": text, "next": len(raw), "eof": run["state"] in STATES_DONE})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "7.1"})

    async def export_submit(self, request: web.Request) -> web.Response:
        table = (await request.json()).get("table")
        export_id = next(self.ids)
        self.exports[export_id] = {"id": export_id, "phase": "queued", "ok": None, "rows": 0, "table": table, "_reads": 0}
        return web.json_response({"id": export_id}, status=201)

    async def export_get(self, request: web.Request) -> web.Response:
        export = self.exports[int(request.match_info["export_id"])]
        export["_reads"] += 1
        if export["_reads"] >= 3:
            export.update(phase="finished", ok=export["table"] != "missing", rows=42)
        else:
            export.update(phase="copying", rows=10 * export["_reads"])
        return web.json_response({k: v for k, v in export.items() if not k.startswith("_")})

    # -- lifecycle -----------------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(middlewares=[self._auth])
        app.add_routes(
            [
                web.post("/api/v2/runs", self.submit),
                web.get("/api/v2/runs", self.find),
                web.get("/api/v2/runs/{run_id}", self.get),
                web.delete("/api/v2/runs/{run_id}", self.cancel),
                web.get("/api/v2/runs/{run_id}/output", self.output),
                web.get("/api/v2/runs/{run_id}/log", self.log),
                web.get("/api/v2/health", self.health),
                web.post("/exports", self.export_submit),
                web.get("/exports/{export_id}", self.export_get),
            ]
        )
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> InHouseService:
        self._thread.start()
        assert self._started.wait(10), "the in-house service did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def inhouse() -> Iterator[InHouseService]:
    with InHouseService() as service:
        yield service


@pytest.fixture(autouse=True)
def connections(inhouse: InHouseService, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = doc_spec("inhouse")
    monkeypatch.setenv(
        "AIRFLOW_CONN_INHOUSE",
        conn_json(inhouse.base_url, TOKEN, dialect="declarative", dialect_options=spec, poll_interval=0.1),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_EXPORTS", conn_json(inhouse.base_url, TOKEN, dialect="declarative", dialect_options=EXPORTS_SPEC)
    )


def test_every_hook_call_through_the_spec(inhouse: InHouseService) -> None:
    hook = JobServiceHook("inhouse")
    job = hook.submit(
        SubmitRequest("export", {"steps": 3, "output": {"rows": 3}}, idempotency_key="k-every-call", meta={"team": "data"})
    )
    assert (job.status, job.raw_status, job.type, job.meta) == (JobStatus.QUEUED, "waiting", "export", {"team": "data"})
    assert hook.submit(SubmitRequest("export", {"steps": 3}, idempotency_key="k-every-call")).id == job.id  # dedupe_key honoured
    other = hook.submit(SubmitRequest("import", {"hold": True}))
    assert [j.id for j in hook.get_jobs([job.id, other.id])] == [job.id, other.id]
    assert any(r.startswith("GET /api/v2/runs?id=") for r in inhouse.requests)  # one batch call, not two lookups
    with pytest.raises(JobNotFoundError, match="r-404"):
        hook.get_jobs([job.id, "r-404"])

    waited = hook.wait_for_job(WaitSpec(job_id=job.id, poll=PollPolicy(interval=0.1)), check_now=True)
    assert waited.outcome is Outcome.SUCCESS and waited.job is not None
    assert waited.job.progress is not None and waited.job.progress.describe() == "3/3 (100%) step 3"
    assert hook.get_result(job.id) == {"rows": 3}

    logs = hook.get_logs(job.id)
    assert logs.complete and logs.data.splitlines() == ["started", "step 1/3 ✓", "step 2/3 ✓", "step 3/3 ✓"]
    rest = hook.get_logs(job.id, len("started\n"))
    assert rest.offset == len("started\n") and rest.data.startswith("step 1/3")
    assert hook.get_logs(job.id, logs.next_offset).data == ""

    listed = [j.id for j in hook.list_jobs()]  # two runs per page: pagination is followed
    assert {job.id, other.id} <= set(listed) and len(listed) == len(inhouse.runs)
    assert [j.id for j in hook.list_jobs(ListQuery(status=["SUCCEEDED"]))] == [
        j.id for j in hook.list_jobs() if j.status is JobStatus.SUCCEEDED
    ]
    ok, message = hook.test_connection()
    assert ok and "in-house runs API 7.1" in message, message


def test_operator_defers_and_returns_the_result(inhouse: InHouseService) -> None:
    op = SubmitAndWaitOperator(
        task_id="t",
        jobservice_conn_id="inhouse",
        job_type="export",
        job_params={"steps": 2, "output": {"file": "s3://x/2026.csv"}},
        poll_interval=0.1,
        deferrable=True,
    )
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "success" and event["job"]["status"] == "SUCCEEDED"
    assert op.execute_complete(context, event) == {"file": "s3://x/2026.csv"}
    assert inhouse.runs[context["ti"].xcom["job_id"]]["state"] == "ok"


def test_a_broken_run_fails_the_task_with_its_problem() -> None:
    op = SubmitAndWaitOperator(
        task_id="t",
        jobservice_conn_id="inhouse",
        job_type="export",
        job_params={"steps": 1, "fail": "disk full on /data"},
        poll_interval=0.1,
        deferrable=False,
    )
    with pytest.raises(AirflowException, match="disk full on /data") as info:
        op.execute(make_context())
    assert "FAILED" in str(info.value)


def test_cancel_goes_through_the_services_stopping_state(inhouse: InHouseService) -> None:
    hook = JobServiceHook("inhouse")
    job = hook.submit(SubmitRequest("export", {"hold": True}))
    assert hook.get_job(job.id).status is JobStatus.RUNNING
    record = CancelJobOperator(task_id="c", jobservice_conn_id="inhouse", job_id=job.id).execute(make_context())
    assert record["status"] == "CANCELLED" and inhouse.runs[job.id]["state"] == "stopped"


def test_an_unknown_state_keeps_waiting_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    hook = JobServiceHook("inhouse")
    job = hook.submit(SubmitRequest("export", {"steps": 1, "pause": 3}))

    async def wait() -> Any:
        async with hook.async_client() as client:
            spec = WaitSpec(job_id=job.id, poll=PollPolicy(interval=0.1))
            return await wait_for_job(client, spec, log=logging.getLogger("tests.declarative"), check_now=True)

    with caplog.at_level(logging.INFO, logger="tests.declarative"):
        waited = asyncio.run(wait())
    assert waited.outcome is Outcome.SUCCESS
    unknown = [r for r in caplog.records if "we do not know" in r.getMessage()]
    assert len(unknown) == 1 and "'paused'" in unknown[0].getMessage()
    assert any("paused" in r.getMessage() for r in caplog.records if "do not know" not in r.getMessage())


def test_done_when_a_json_field_equals_a_value() -> None:
    op = SubmitAndWaitOperator(
        task_id="t",
        jobservice_conn_id="exports",
        job_type="export",
        job_params={"table": "orders"},
        poll_interval=0.1,
        deferrable=True,
    )
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "success" and event["job"]["status"] == "SUCCEEDED"
    assert op.execute_complete(context, event) == {"rows": 42}  # record.result: a projection of the record

    hook = JobServiceHook("exports")
    bad = hook.submit(SubmitRequest("export", {"table": "missing"}))
    waited = hook.wait_for_job(WaitSpec(job_id=bad.id, targets=TERMINAL, poll=PollPolicy(interval=0.1)), check_now=True)
    assert waited.job is not None and waited.job.status is JobStatus.FAILED and waited.job.raw_status == "bad"


def test_service_errors_are_classified_with_the_services_reason(inhouse: InHouseService, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = JobServiceHook("inhouse")
    with pytest.raises(InvalidRequestError, match="no such pipeline 'exprt'"):
        hook.submit(SubmitRequest("exprt"))
    with pytest.raises(JobNotFoundError, match="unknown run"):
        hook.get_job("r-999/../../health")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WRONG_TOKEN",
        conn_json(inhouse.base_url, "nope", dialect="declarative", dialect_options=doc_spec("inhouse")),
    )
    with pytest.raises(AuthenticationError, match="bad token"):
        JobServiceHook("wrong_token").get_job("r-1")


def test_a_broken_spec_fails_when_the_connection_is_read(inhouse: InHouseService, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = doc_spec("inhouse")
    spec["record"]["status"] = "state =="
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", conn_json(inhouse.base_url, TOKEN, dialect="declarative", dialect_options=spec))
    before = len(inhouse.requests)
    with pytest.raises(ConfigurationError, match=re.escape("record.status: invalid JMESPath")):
        JobServiceHook("broken").get_job("r-1")
    ok, message = JobServiceHook("broken").test_connection()
    assert not ok and "record.status" in message and "'broken'" in message
    assert len(inhouse.requests) == before  # rejected before anything was sent


def test_a_status_check_is_one_batch_request_and_the_log_has_a_schedule_of_its_own(
    inhouse: InHouseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """120 deferred waits in one triggerer loop, through the shared watcher, on a service whose
    log comes whole (as Ray's and Prefect's do). Their status checks are batch lookups (at most
    50 ids each, the spec's max_batch) and nothing else: no GET of a single run. Their logs are
    read only when followed, each wait's about once per poll interval, whatever the checks do."""
    spec = doc_spec("inhouse")
    spec["operations"]["logs"] = {"path": "/api/v2/runs/{job_id}/log", "text": "text"}  # the whole log every time
    monkeypatch.setenv("AIRFLOW_CONN_WHOLELOG", conn_json(inhouse.base_url, TOKEN, dialect="declarative", dialect_options=spec))
    hook = JobServiceHook("wholelog")
    ids = [hook.submit(SubmitRequest("export", {"hold": True})).id for _ in range(120)]
    batch, single, logs = (
        re.compile(r"GET /api/v2/runs\?id="),
        re.compile(r"GET /api/v2/runs/r-\d+$"),
        re.compile(r"GET /api/v2/runs/r-\d+/log"),
    )

    def run_waits(follow_logs: bool, seconds: float) -> list[str]:
        async def waits() -> None:
            triggers = [
                JobStatusTrigger(
                    job_id=job_id, jobservice_conn_id="wholelog", poll_policy={"interval": 1.0}, follow_logs=follow_logs
                )
                for job_id in ids
            ]
            running = [asyncio.ensure_future(anext(trigger.run())) for trigger in triggers]
            await asyncio.sleep(seconds)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

        before = len(inhouse.requests)
        asyncio.run(waits())
        return inhouse.requests[before:]

    sent = run_waits(follow_logs=False, seconds=4.0)
    batches = [request for request in sent if batch.match(request)]
    asked = sum(request.count("id=") for request in batches)
    assert sent and len(batches) == len(sent), [r for r in sent if not batch.match(r)][:5]  # status checks only
    assert all(request.count("id=") <= 50 for request in batches)
    assert asked >= 3 * len(ids)  # every wait was checked about once a second
    assert len(batches) <= asked / 10, (len(batches), asked)  # many waits' checks per request, not one each

    sent = run_waits(follow_logs=True, seconds=4.0)
    assert not [request for request in sent if single.match(request)]  # no GET of a run beside its batch lookup
    reads = collections.Counter(request.split("?")[0] for request in sent if logs.match(request))
    assert set(reads) == {f"GET /api/v2/runs/{job_id}/log" for job_id in ids}
    assert max(reads.values()) <= 6, reads.most_common(3)  # about once per interval (4 s of waiting), not more
    assert all(batch.match(request) or logs.match(request) for request in sent)
