"""A job-service simulator for the benchmark: jobs that finish at scheduled times, three APIs, counters.

Usage: ``python bench/simulator.py [--port 0] [--token TOKEN]`` prints ``SIMULATOR LISTENING <port>``
once it accepts connections on 127.0.0.1 and serves until SIGTERM/SIGINT.

What it speaks, for the same set of jobs:

- the provider's native v1 API (docs/openapi.yaml): ``GET /v1/jobs/{id}`` (with ``wait_s``/``seen``
  long-poll), the batch lookup ``GET /v1/jobs?id=..&id=..``, the watch ``POST /v1/watch``
  (``{"seen": {id: version}, "wait_s": N}``, answered with only the jobs whose version differs
  and the ids that do not exist, once there are any) and ``GET /v1/health``. A job is RUNNING at
  version 2 until its finish time, then SUCCEEDED at version 3: one change, when it finishes.
- ``GET /http/jobs/{id}`` for Airflow's ``HttpSensorTrigger``: 404 until the job is done, then 200.
- ``POST /v1/describejobs``, the AWS Batch ``DescribeJobs`` call as aiobotocore sends it, for the
  amazon provider's ``BatchJobTrigger`` (waiter ``batch_job_complete``: ``jobs[].status``).

Control endpoints (no auth, used by the runner): ``POST /_bench/setup`` creates the jobs of a run
(all RUNNING, no finish time yet, plus one already finished job for warming up);
``POST /_bench/start`` zeroes the counters and schedules the finish times from now;
``GET /_bench/stats`` returns the counters and the finish times.

Counted per run: requests by kind, ids looked up, TCP connections accepted (one per call of the
protocol factory) and the most connections open at once, and the simulator's own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import random
import resource
import signal
import sys
import time
from typing import Any

from aiohttp import web

ACCOUNT = "123456789012"
REGION = "us-east-1"
WARM_ID = "j_" + "f" * 32
MAX_BATCH = 100
MAX_WATCH = 10_000
MAX_WAIT_S = 60.0
# A burst of thousands of new connections (HttpSensorTrigger opens one per poll) must not
# overflow the accept queue: a dropped SYN is retried after 1 s and would show up as latency.
BACKLOG = 4096


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_id(run: int, index: int) -> str:
    """The id of job ``index`` in run ``run``: the native API's ``j_`` + 32 hex digits."""
    return f"j_{run:08x}{index:024x}"


class Simulation:
    """The jobs of the current run, their schedule and the counters."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.run = 0
        self.index: dict[str, int] = {}
        self.finish: list[float] = []
        self.created = time.time()
        self.started: float | None = None
        self.server: web.Server | None = None
        # Job ids asked about since setup: tells when every trigger of a run is up.
        self.ids_seen: set[str] = set()
        self.reset_counters()

    # -- the run ---------------------------------------------------------------------------
    def setup(self, n: int) -> dict[str, Any]:
        self.run += 1
        self.index = {job_id(self.run, i): i for i in range(n)}
        self.index[WARM_ID] = n
        self.finish = [float("inf")] * n + [time.time() - 1.0]
        self.created = time.time()
        self.started = None
        self.ids_seen = set()
        self.reset_counters()
        return {"run": self.run, "ids": list(self.index)[:n], "warm_id": WARM_ID}

    def start(self, finish_min: float, finish_max: float, seed: int) -> dict[str, Any]:
        rng = random.Random(seed)
        now = time.time()
        n = len(self.finish) - 1
        self.finish[:n] = [now + rng.uniform(finish_min, finish_max) for _ in range(n)]
        self.started = now
        self.reset_counters()
        return {"t0": now}

    def reset_counters(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self.control_connections = 0
        self.seen_connections: set[int] = set()
        self.open_peak = 0
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()

    def stats(self) -> dict[str, Any]:
        n = len(self.finish) - 1
        return {
            "run": self.run,
            "t0": self.started,
            "requests": dict(self.counters),
            # Connections whose first request was a control call (the runner's) are not the triggers'.
            "tcp_connections": self.connections - self.control_connections,
            "open_connections_peak": self.open_peak,
            "distinct_ids_seen": len(self.ids_seen),
            "open_connections_now": len(self.server.connections) if self.server else 0,
            "cpu_seconds": time.process_time() - self.cpu0,
            "wall_seconds": time.monotonic() - self.wall0,
            "finish": {jid: self.finish[i] for jid, i in self.index.items() if i < n},
        }

    # -- job state -------------------------------------------------------------------------
    def lookup(self, jid: str) -> tuple[int, float] | None:
        """``(index, finish time)`` of a job, or None if it is not in this run."""
        i = self.index.get(jid)
        if i is None:
            return None
        self.ids_seen.add(jid)
        return i, self.finish[i]

    def native_record(self, jid: str, finish: float, now: float) -> dict[str, Any]:
        done = now >= finish
        return {
            "id": jid,
            "key": None,
            "type": "sleep",
            "params": {"seconds": 60},
            "status": "SUCCEEDED" if done else "RUNNING",
            "version": 3 if done else 2,
            "progress": {"completed": 1 if done else 0, "total": 1, "message": None},
            "attempt": 1,
            "created_at": _iso(self.created),
            "started_at": _iso(self.created),
            "updated_at": _iso(finish if done else self.created),
            "finished_at": _iso(finish) if done else None,
            "error": None,
            "meta": {"bench_run": self.run},
            "timeout_s": None,
        }

    def prefect_record(self, jid: str, finish: float, now: float) -> dict[str, Any]:
        """A Prefect 3 flow run as ``POST /api/flow_runs/filter`` returns it (every field Prefect 3.9
        sends; the estimated run time changes on every read, as Prefect's does)."""
        done = now >= finish
        state_type, state_name = ("COMPLETED", "Completed") if done else ("RUNNING", "Running")
        ended = _iso(finish) if done else None
        return {
            "id": jid,
            "created": _iso(self.created),
            "updated": _iso(finish if done else self.created),
            "name": f"bench-{jid[-12:]}",
            "flow_id": "0b7e6f1c-0000-4000-8000-00000000f100",
            "state_id": f"{jid}-{state_type.lower()}",
            "deployment_id": "0b7e6f1c-0000-4000-8000-0000000000de",
            "deployment_version": None,
            "work_queue_name": "default",
            "flow_version": "1",
            "parameters": {"seconds": 60},
            "idempotency_key": None,
            "context": {},
            "empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 0, "retry_delay": 0, "pause_keys": []},
            "tags": [],
            "labels": {"prefect.flow.id": "0b7e6f1c-0000-4000-8000-00000000f100", "bench_run": str(self.run)},
            "parent_task_run_id": None,
            "state_type": state_type,
            "state_name": state_name,
            "run_count": 1,
            "expected_start_time": _iso(self.created),
            "next_scheduled_start_time": None,
            "start_time": _iso(self.created),
            "end_time": ended,
            "total_run_time": (finish - self.created) if done else 0.0,
            "estimated_run_time": max(0.0, (finish if done else now) - self.created),
            "estimated_start_time_delta": 0.0,
            "auto_scheduled": False,
            "infrastructure_document_id": None,
            "infrastructure_pid": None,
            "created_by": None,
            "work_queue_id": "0b7e6f1c-0000-4000-8000-0000000000a1",
            "work_pool_id": "0b7e6f1c-0000-4000-8000-0000000000a2",
            "work_pool_name": "bench",
            "state": {
                "id": f"{jid}-{state_type.lower()}",
                "type": state_type,
                "name": state_name,
                "timestamp": ended or _iso(self.created),
                "message": None,
                "data": None,
                "state_details": {"flow_run_id": jid, "task_run_id": None, "pause_reschedule": False},
            },
            "job_variables": {},
        }

    def batch_record(self, jid: str, finish: float, now: float) -> dict[str, Any]:
        done = now >= finish
        record: dict[str, Any] = {
            "jobArn": f"arn:aws:batch:{REGION}:{ACCOUNT}:job/{jid}",
            "jobName": f"bench-{jid}",
            "jobId": jid,
            "jobQueue": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/bench",
            "status": "SUCCEEDED" if done else "RUNNING",
            "statusReason": "Essential container in task exited" if done else None,
            "attempts": [],
            "createdAt": int(self.created * 1000),
            "startedAt": int(self.created * 1000),
            "dependsOn": [],
            "jobDefinition": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/bench:1",
            "parameters": {},
            "platformCapabilities": ["EC2"],
        }
        if done:
            record["stoppedAt"] = int(finish * 1000)
        return {k: v for k, v in record.items() if v is not None}


def _problem(status: int, title: str, detail: str, slug: str) -> web.Response:
    body = {"type": f"https://jobservice.dev/problems/{slug}", "title": title, "status": status, "detail": detail}
    return web.json_response(body, status=status, content_type="application/problem+json")


def make_app(sim: Simulation) -> web.Application:
    routes = web.RouteTableDef()

    def authorised(request: web.Request) -> bool:
        return sim.token is None or request.headers.get("Authorization") == f"Bearer {sim.token}"

    @routes.get("/v1/health")
    async def health(request: web.Request) -> web.Response:
        sim.counters["native_health"] += 1
        return web.json_response({"status": "ok", "service": "bench-simulator", "version": "1", "api": "v1"})

    @routes.get("/v1/jobs/{id}")
    async def get_job(request: web.Request) -> web.Response:
        jid = request.match_info["id"]
        wait_s, seen = request.query.get("wait_s"), request.query.get("seen")
        long_poll = wait_s is not None and seen is not None
        sim.counters["native_longpoll" if long_poll else "native_get"] += 1
        if not authorised(request):
            return _problem(401, "Unauthorized", "bad or missing token", "unauthorized")
        found = sim.lookup(jid)
        if found is None:
            return _problem(404, "Job not found", f"no job {jid}", "job-not-found")
        _, finish = found
        if long_poll:
            try:
                wait, seen_version = min(float(wait_s or 0), MAX_WAIT_S), int(seen or 0)
            except ValueError:
                return _problem(400, "Invalid request", "wait_s and seen must be numbers", "invalid-request")
            now = time.time()
            current = 3 if now >= finish else 2
            if seen_version == current:
                # The only change a job has left is its finish, whose time is known: sleeping
                # until then (or the wait's end) answers exactly when a notifying service would.
                next_change = finish if current == 2 else now + wait
                await asyncio.sleep(max(0.0, min(wait, next_change - now)))
        return web.json_response(sim.native_record(jid, finish, time.time()))

    @routes.get("/v1/jobs")
    async def get_many(request: web.Request) -> web.Response:
        ids = request.query.getall("id", [])
        sim.counters["native_batch"] += 1
        sim.counters["native_batch_ids"] += len(ids)
        if not authorised(request):
            return _problem(401, "Unauthorized", "bad or missing token", "unauthorized")
        if not ids:
            return _problem(400, "Invalid request", "the simulator only serves batch lookups by id", "invalid-request")
        if "seen" in request.query or "wait_s" in request.query:
            # As in the real service: a client still sending the old batch long-poll must fail
            # loudly, not get instant answers and spin.
            return _problem(400, "Invalid request", "the batch lookup does not wait; use POST /v1/watch", "invalid-request")
        if len(ids) > MAX_BATCH:
            return _problem(400, "Too many ids", f"at most {MAX_BATCH} ids per lookup", "too-many-ids")
        now = time.time()
        jobs, missing = [], []
        for jid in dict.fromkeys(ids):
            found = sim.lookup(jid)
            if found is None:
                missing.append(jid)
            else:
                jobs.append(sim.native_record(jid, found[1], now))
        return web.json_response({"jobs": jobs, "missing": missing})

    @routes.post("/api/flow_runs/filter")
    async def prefect_filter(request: web.Request) -> web.Response:
        """Prefect 3's flow run filter, as the prefect preset's batch lookup sends it."""
        sim.counters["prefect_filter"] += 1
        if not authorised(request):
            return web.json_response({"detail": "Unauthorized"}, status=401)
        try:
            body = await request.json()
            ids = body["flow_runs"]["id"]["any_"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"detail": "the simulator only serves filters by flow run id"}, status=422)
        sim.counters["prefect_filter_ids"] += len(ids)
        now = time.time()
        runs = [sim.prefect_record(jid, found[1], now) for jid in dict.fromkeys(ids) if (found := sim.lookup(jid)) is not None]
        return web.json_response(runs[: int(body.get("limit", 200))])

    @routes.post("/v1/watch")
    async def watch(request: web.Request) -> web.Response:
        sim.counters["native_watch"] += 1
        if not authorised(request):
            return _problem(401, "Unauthorized", "bad or missing token", "unauthorized")
        try:
            body = await request.json()
        except ValueError:
            return _problem(400, "Invalid request", "the body must be a JSON object", "invalid-request")
        seen = body.get("seen") if isinstance(body, dict) else None
        if not isinstance(seen, dict) or not seen:
            return _problem(400, "Invalid request", "'seen' must map 1 or more job ids to versions", "invalid-request")
        sim.counters["native_watch_ids"] += len(seen)
        if len(seen) > MAX_WATCH:
            return _problem(400, "Too many ids", f"at most {MAX_WATCH} ids per watch", "too-many-ids")
        wait = body.get("wait_s", 0)
        valid_wait = not isinstance(wait, bool) and isinstance(wait, int | float) and wait >= 0
        if not valid_wait or any(isinstance(v, bool) or not isinstance(v, int) for v in seen.values()):
            return _problem(400, "Invalid request", "wait_s must be a number >= 0 and seen versions integers", "invalid-request")

        def differences(now: float) -> tuple[list[dict[str, Any]], list[str]]:
            jobs, missing = [], []
            for jid, version in seen.items():
                found = sim.lookup(jid)
                if found is None:
                    missing.append(jid)
                elif (3 if now >= found[1] else 2) != version:
                    jobs.append(sim.native_record(jid, found[1], now))
            return jobs, missing

        now = time.time()
        jobs, missing = differences(now)
        if not jobs and not missing:
            # Every listed job is as the caller saw it: the only change left is an unfinished
            # job's finish, whose time is known, so sleeping until the earliest one (or the
            # wait's end) answers exactly when a notifying service would.
            deadline = now + min(float(wait), MAX_WAIT_S)
            finishes = [finish for finish in (sim.finish[sim.index[jid]] for jid in seen) if finish > now]
            while not jobs and not missing and now < deadline:
                next_change = min((finish for finish in finishes if finish > now), default=deadline)
                await asyncio.sleep(min(deadline, next_change) - now)
                now = time.time()
                jobs, missing = differences(now)
        return web.json_response({"jobs": jobs, "missing": missing})

    @routes.get("/http/jobs/{id}")
    async def http_job(request: web.Request) -> web.Response:
        sim.counters["http"] += 1
        found = sim.lookup(request.match_info["id"])
        if found is None or time.time() < found[1]:
            return web.Response(status=404, text="not done")
        return web.json_response({"status": "SUCCEEDED"})

    @routes.post("/v1/describejobs")
    async def describe_jobs(request: web.Request) -> web.Response:
        sim.counters["batch_describe"] += 1
        try:
            body = await request.json()
            ids = list(body["jobs"])
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"__type": "ClientException", "message": "jobs is required"},
                status=400,
                headers={"x-amzn-ErrorType": "ClientException"},
            )
        sim.counters["batch_describe_ids"] += len(ids)
        now = time.time()
        jobs = []
        for jid in ids:
            found = sim.lookup(jid)
            if found is not None:
                jobs.append(sim.batch_record(jid, found[1], now))
        return web.json_response({"jobs": jobs}, headers={"x-amzn-RequestId": f"bench-{sim.counters['batch_describe']}"})

    @routes.post("/_bench/setup")
    async def setup(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(sim.setup(int(body["n"])))

    @routes.post("/_bench/start")
    async def start(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(sim.start(float(body["finish_min"]), float(body["finish_max"]), int(body.get("seed", 0))))

    @routes.get("/_bench/stats")
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(sim.stats())

    @web.middleware
    async def classify_connection(request: web.Request, handler: Any) -> web.StreamResponse:
        key = id(request.transport)
        if key not in sim.seen_connections:
            if request.path.startswith("/_bench/"):
                sim.control_connections += 1
            sim.seen_connections.add(key)
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application(middlewares=[classify_connection])
    app.add_routes(routes)
    return app


async def serve(port: int, token: str | None) -> None:
    sim = Simulation(token)
    app = make_app(sim)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    server = runner.server
    assert server is not None
    sim.server = server

    def protocol_factory() -> web.RequestHandler:
        # Called once per accepted TCP connection: the only honest place to count them.
        sim.connections += 1
        sim.open_peak = max(sim.open_peak, len(server.connections) + 1)
        return server()

    loop = asyncio.get_running_loop()
    listener = await loop.create_server(protocol_factory, "127.0.0.1", port, backlog=BACKLOG, reuse_address=True)
    bound = listener.sockets[0].getsockname()[1]
    print(f"SIMULATOR LISTENING {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    await runner.cleanup()


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--token", default=None, help="bearer token the native API requires (default: none)")
    args = parser.parse_args(argv)
    raise_fd_limit()
    # The simulator must not be the bottleneck it measures others against: uvloop when present.
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, args.token))
    else:
        uvloop.run(serve(args.port, args.token))
    sys.exit(0)


if __name__ == "__main__":
    main()
