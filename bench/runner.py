"""Run N triggers of one kind in one event loop, as Airflow's triggerer does, and measure them.

Usage (``run_all.py`` calls it, one fresh process per kind and N)::

    python bench/runner.py --kind ours --n 1000 --sim http://127.0.0.1:PORT --out result.json

The simulator (``bench/simulator.py``) must be running. What one run does:

1. set up N jobs in the simulator and point three Airflow connections at it (environment);
2. warm up: one wait of the same kind on a job that has already finished, so one-time imports
   and caches (Airflow's connection machinery, botocore's service model) are not measured, as in
   a triggerer that has been running for a while;
3. baseline RSS; build the N triggers from their ``serialize()``d kwargs (classpath + JSON
   round trip, as the triggerer rebuilds them from the database);
4. start the simulator's clock (jobs finish uniformly over the window from now), then run
   every trigger as its own asyncio task like ``TriggerRunner.run_trigger`` (admitted one per
   loop turn as ``create_triggers`` does; greenback portal,
   ``async for event in trigger.run()``), recording the first event's time and counting events
   until the generator ends (the triggerer cancels a trigger about a second after its event; we
   allow ``LINGER`` seconds);
5. while they run: the loop's turns are timed (the longest is the loop's lag; see ``LoopMonitor``) and a thread
   samples RSS every second;
6. afterwards: process CPU seconds over the run, the simulator's counters, and per-wait figures.

The result is one JSON object (``--out``, or stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import importlib
import json
import math
import os
import resource
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import psutil

# ours: JobStatusTrigger on the native API (batch lookups + the watch). ours-poll: the same
# trigger on a connection whose declarative dialect speaks the same API without the watch
# (what any service without one gets: jittered polls coalesced into batch lookups). floor:
# Airflow's DateTimeTrigger firing at each job's finish time, which needs nothing from the
# service: what the triggerer itself spends on a trigger, the least any wait can cost.
KINDS = ("ours", "ours-poll", "ours-prefect", "http", "batch", "floor")
CONN_OURS = "bench_jobservice"
CONN_OURS_POLL = "bench_jobservice_poll"
# ours-prefect: the same trigger through the declarative dialect's prefect preset, on Prefect-shaped
# flow runs (POST /api/flow_runs/filter): a service many users run, records of about 40 fields.
CONN_OURS_PREFECT = "bench_jobservice_prefect"
OURS_CONNECTIONS = {"ours": CONN_OURS, "ours-poll": CONN_OURS_POLL, "ours-prefect": CONN_OURS_PREFECT}
# The native v1 API as a declarative spec without the watch (docs/dialects.md).
NATIVE_WITHOUT_WATCH = {
    "name": "native v1 API, polled",
    "operations": {
        "submit": {"method": "POST", "path": "/v1/jobs", "body": {"type": "{job_type}", "params": "{params}"}},
        "get": {"path": "/v1/jobs/{job_id}"},
        "get_many": {"path": "/v1/jobs", "query": {"id": "{job_ids}"}, "jobs": "jobs", "max_batch": 100},
    },
    "record": {
        "id": "id",
        "status": "status",
        "version": "version",
        "progress": {"completed": "progress.completed", "total": "progress.total", "message": "progress.message"},
        "created_at": "created_at",
        "started_at": "started_at",
        "finished_at": "finished_at",
    },
    "status_map": {status: status for status in ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED")},
}
CONN_HTTP = "bench_http"
CONN_AWS = "bench_aws"
TOKEN = "bench-token"
STALL = 0.2
# Once a second: a wake-up of the sampling thread costs the process CPU like any other (about
# 0.3 ms here), and RSS grows as waits are admitted and then holds; 10 Hz cost 3 ms a second.
RSS_SAMPLE = 1.0
# After its first event a trigger gets this long to end its generator (a second event counts).
LINGER = 2.0
# BatchJobTrigger gives up after waiter_max_attempts polls; it must never do so here.
BATCH_MAX_ATTEMPTS = 100_000


# -- the simulator's control API (blocking: only called outside the measured window) ------------
def sim_call(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def connection_env(sim_url: str, ours_extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Airflow connections for the three kinds, as environment variables (no database)."""
    host, port = sim_url.removeprefix("http://").split(":")
    return {
        f"AIRFLOW_CONN_{CONN_OURS.upper()}": json.dumps(
            {"conn_type": "jobservice", "host": sim_url, "password": TOKEN, "extra": ours_extra or {}}
        ),
        f"AIRFLOW_CONN_{CONN_OURS_POLL.upper()}": json.dumps(
            {
                "conn_type": "jobservice",
                "host": sim_url,
                "password": TOKEN,
                "extra": {"dialect": "declarative", "dialect_options": NATIVE_WITHOUT_WATCH},
            }
        ),
        f"AIRFLOW_CONN_{CONN_OURS_PREFECT.upper()}": json.dumps(
            {
                "conn_type": "jobservice",
                "host": sim_url + "/api",
                "password": TOKEN,
                "extra": {"dialect": "declarative", "dialect_options": {"preset": "prefect"}},
            }
        ),
        f"AIRFLOW_CONN_{CONN_HTTP.upper()}": json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http"}),
        f"AIRFLOW_CONN_{CONN_AWS.upper()}": json.dumps(
            {
                "conn_type": "aws",
                "login": "AKIDBENCHMARK",
                "password": "bench-secret",
                "extra": {"region_name": "us-east-1", "endpoint_url": sim_url},
            }
        ),
        # botocore must never look beyond 127.0.0.1 for credentials, region or config.
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def make_trigger(kind: str, job_id: str, interval: float, ours_poll: dict[str, Any], finish: float | None = None) -> Any:
    """A trigger as a deferring operator would create it (``finish``: the job's, for ``floor``)."""
    if kind in OURS_CONNECTIONS:
        from jobservice_provider.triggers.jobservice import JobStatusTrigger

        conn_id = OURS_CONNECTIONS[kind]
        return JobStatusTrigger(job_id=job_id, jobservice_conn_id=conn_id, poll_policy={"interval": interval, **ours_poll})
    if kind == "floor":
        import pendulum
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        return DateTimeTrigger(moment=pendulum.from_timestamp(finish if finish is not None else time.time()))
    if kind == "http":
        from airflow.providers.http.triggers.http import HttpSensorTrigger

        return HttpSensorTrigger(endpoint=f"http/jobs/{job_id}", http_conn_id=CONN_HTTP, method="GET", poke_interval=interval)
    if kind == "batch":
        from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger

        delay: float = int(interval) if float(interval).is_integer() else interval
        return BatchJobTrigger(
            job_id=job_id,
            aws_conn_id=CONN_AWS,
            region_name="us-east-1",
            waiter_delay=delay,  # type: ignore[arg-type]
            waiter_max_attempts=BATCH_MAX_ATTEMPTS,
        )
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


def rebuild(trigger: Any) -> Any:
    """The trigger the triggerer would run: its class imported by path, built from JSON kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**json.loads(json.dumps(kwargs, default=_encode_datetime), object_hook=_decode_datetime))


def _encode_datetime(value: Any) -> Any:
    """Datetimes survive the round trip as Airflow's serializer keeps them: tagged."""
    if isinstance(value, datetime.datetime):
        return {"__datetime__": value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode_datetime(value: dict[str, Any]) -> Any:
    if set(value) == {"__datetime__"}:
        import pendulum

        return pendulum.parse(value["__datetime__"])
    return value


def event_ok(kind: str, payload: Any, job_id: str) -> bool:
    if kind == "floor":
        return payload is not None
    if kind in OURS_CONNECTIONS:
        return isinstance(payload, dict) and payload.get("status") == "success" and payload.get("job_id") == job_id
    if kind == "http":
        return payload is True
    return isinstance(payload, dict) and payload.get("status") == "success" and payload.get("job_id") == job_id


# -- measuring ----------------------------------------------------------------------------------
@dataclass
class WaitRecord:
    job_id: str
    first_event: float | None = None
    events: int = 0
    payload_ok: bool = False
    lingered: bool = False
    error: str | None = None


class RssSampler(threading.Thread):
    """Samples the process RSS from a thread, so a blocked event loop cannot hide a peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.process = psutil.Process()
        self.peak: int = self.process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(RSS_SAMPLE):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return max(self.peak, int(self.process.memory_info().rss))


class LoopMonitor:
    """How long each turn of the event loop keeps it busy (its ready callbacks run back to back):
    a turn longer than ``STALL`` holds every wait up that long; that is the loop's lag.

    Timed by wrapping the loop's own turn (``_run_once``) and its selector's ``select`` (the time
    a turn waits for I/O is not busy), so measuring adds no wake-up of its own. The 20 Hz heartbeat
    task used before cost the process about 5 ms of CPU a second on a 2-CPU VM (a wake-up from an
    idle wait costs about 240 us of CPU there), charged to every kind alike: for a kind that
    costs 1 CPU-s a run that was a third of its figure, and it hid real differences in the ratios.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, t0: float, n: int) -> None:
        self.loop, self.t0, self.n = loop, t0, n
        self.started = 0  # triggers admitted: until every one is, the loop is in its start-up
        self.max_late = 0.0
        self.max_late_startup = 0.0
        self.max_late_steady = 0.0
        self.stalls = 0
        self.stalls_steady = 0
        self.per_second: list[float] = []
        self._waited = 0.0

    def __enter__(self) -> LoopMonitor:
        loop: Any = self.loop
        selector = loop._selector
        select, turn, clock = selector.select, loop._run_once, time.perf_counter

        def timed_select(timeout: float | None = None) -> Any:
            before = clock()
            try:
                return select(timeout)
            finally:
                self._waited += clock() - before

        def timed_turn() -> None:
            self._waited = 0.0
            before = clock()
            turn()
            self._record(clock() - before - self._waited)

        selector.select, loop._run_once = timed_select, timed_turn
        return self

    def __exit__(self, *exc: object) -> None:
        loop: Any = self.loop
        del loop._selector.select, loop._run_once  # the class's own methods again
        # Every second of the run has its entry (0.0: no turn of a millisecond or more).
        self.per_second.extend([0.0] * (int(time.time() - self.t0) + 1 - len(self.per_second)))

    def _record(self, busy: float) -> None:
        in_startup = self.started < self.n
        self.max_late = max(self.max_late, busy)
        if in_startup:
            self.max_late_startup = max(self.max_late_startup, busy)
        else:
            self.max_late_steady = max(self.max_late_steady, busy)
        if busy > STALL:
            self.stalls += 1
            self.stalls_steady += not in_startup
        if busy < 0.001:
            return  # the per-second series shows lag of a millisecond and more; most turns are far shorter
        # A long turn covers every second it spans, not only the one it ended in.
        now = time.time()
        first, last = max(0, int(now - busy - self.t0)), max(0, int(now - self.t0))
        while len(self.per_second) <= last:
            self.per_second.append(0.0)
        for second in range(first, last + 1):
            self.per_second[second] = max(self.per_second[second], busy)


class GcPauses:
    """Every garbage collection during the run and how long it held the process (all threads wait)."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.started is not None:
            self.pauses.append((info["generation"], time.perf_counter() - self.started))
            self.started = None

    def summary(self) -> dict[str, Any]:
        full = [seconds for generation, seconds in self.pauses if generation == 2]
        return {
            "gc_collections": len(self.pauses),
            "gc_full_collections": len(full),
            "gc_max_pause": max((seconds for _, seconds in self.pauses), default=0.0),
            "gc_full_max_pause": max(full, default=0.0),
        }


async def run_one(kind: str, trigger: Any, record: WaitRecord, monitor: LoopMonitor | None = None) -> None:
    """What ``TriggerRunner.run_trigger`` does with one trigger, minus the database."""
    import greenback

    loop = asyncio.get_running_loop()
    try:
        # As TriggerRunner.run_trigger: a portal for every trigger unless the triggerer was told not to.
        if os.environ.get("AIRFLOW_DISABLE_GREENBACK_PORTAL", "").lower() != "true":
            await greenback.ensure_portal()
        gen = trigger.run()
        if monitor is not None:
            monitor.started += 1
        try:
            async with asyncio.timeout(None) as scope:
                async for event in gen:
                    record.events += 1
                    if record.first_event is None:
                        record.first_event = time.time()
                        record.payload_ok = event_ok(kind, event.payload, record.job_id)
                        scope.reschedule(loop.time() + LINGER)
        except TimeoutError:
            record.lingered = True
        finally:
            await gen.aclose()
    except Exception as exc:  # a failing trigger is a result to report, not a crash of the run
        record.error = f"{type(exc).__name__}: {exc}"[:300]


async def warm_up(kind: str, job_id: str, interval: float, ours_poll: dict[str, Any]) -> None:
    """One wait of ``kind`` on a job that has already finished: one-time imports and caches are
    then not measured, as in a triggerer that has been running for a while."""
    warm = WaitRecord(job_id)
    await run_one(kind, rebuild(make_trigger(kind, job_id, interval, ours_poll)), warm)
    if warm.error or not warm.payload_ok:
        raise SystemExit(f"warm-up wait failed: {warm}")


async def admit(
    kind: str, triggers: list[Any], records: list[WaitRecord], monitor: LoopMonitor | None = None
) -> list[asyncio.Task[None]]:
    """Start every trigger as its own task, as the triggerer does."""
    tasks = []
    for i, (trigger, record) in enumerate(zip(triggers, records, strict=True)):
        # TriggerRunner.create_triggers yields to the loop before admitting each trigger, so a
        # trigger's first step runs soon after its task exists, between other work.
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(run_one(kind, trigger, record, monitor), name=f"{kind}-{i}"))
    return tasks


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100])."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    sim = args.sim
    setup = sim_call(sim, "/_bench/setup", {"n": args.n})
    ids: list[str] = setup["ids"]
    ours_poll = json.loads(args.ours_poll_policy) if args.ours_poll_policy else {}

    await warm_up(args.kind, setup["warm_id"], args.interval, ours_poll)
    await asyncio.sleep(LINGER)
    gc.collect()
    process = psutil.Process()
    rss_baseline = process.memory_info().rss
    sampler = RssSampler()
    sampler.start()

    def build(finish: dict[str, float] | None = None) -> list[Any]:
        return [
            rebuild(make_trigger(args.kind, job_id, args.interval, ours_poll, finish[job_id] if finish else None))
            for job_id in ids
        ]

    cpu_build0 = time.process_time()
    triggers = build() if args.kind != "floor" else []
    records = [WaitRecord(job_id) for job_id in ids]

    load_before = os.getloadavg()
    started = sim_call(sim, "/_bench/start", {"finish_min": args.finish_min, "finish_max": args.finish_max, "seed": args.seed})
    t0 = started["t0"]
    if args.kind == "floor":  # it waits for the finish times themselves, known only now
        triggers = build(sim_call(sim, "/_bench/stats")["finish"])
    cpu_build = time.process_time() - cpu_build0
    cpu0, wall0 = time.process_time(), time.monotonic()
    threads0 = threading.active_count()

    gc_pauses = GcPauses()
    gc.callbacks.append(gc_pauses)
    with LoopMonitor(asyncio.get_running_loop(), t0, args.n) as monitor:
        tasks = await admit(args.kind, triggers, records, monitor)
        del triggers
        # Long enough for a trigger that cannot keep up to finish late, but the run always ends.
        bound = args.finish_max + max(120.0, 24 * args.interval) + LINGER
        _, pending = await asyncio.wait(tasks, timeout=bound)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
    gc.callbacks.remove(gc_pauses)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    rss_peak = sampler.stop()
    load_after = os.getloadavg()
    stats = sim_call(sim, "/_bench/stats")
    finish: dict[str, float] = stats["finish"]

    waited = [r for r in records if r.first_event is not None]
    # Normalised by the time the jobs ran (the same for every kind: same seed, same N), not by
    # how long each trigger took to notice, which would make a late trigger look cheaper.
    wait_minutes = sum(finish[r.job_id] - t0 for r in records) / 60.0
    cut_off = t0 + wall
    wait_minutes_observed = sum((r.first_event or cut_off) - t0 for r in records) / 60.0
    latencies = [r.first_event - finish[r.job_id] for r in waited if r.first_event]
    early = sum(1 for latency in latencies if latency < 0)
    requests = {k: v for k, v in stats["requests"].items() if not k.endswith("_ids")}
    total_requests = sum(requests.values())
    n = args.n
    wm = wait_minutes or float("nan")
    pool_size = None
    if args.kind in OURS_CONNECTIONS:
        from jobservice_provider.core import sessions

        pool_size = getattr(sessions, "DEFAULT_CONNECTION_LIMIT", None)
    return {
        "kind": args.kind,
        "n": n,
        "interval": args.interval,
        "finish_window": [args.finish_min, args.finish_max],
        "seed": args.seed,
        "python": sys.version.split()[0],
        "greenback_portal": os.environ.get("AIRFLOW_DISABLE_GREENBACK_PORTAL", "").lower() != "true",
        "provider_src": args.provider_src,
        "ours_poll_policy": ours_poll if args.kind.startswith("ours") else None,
        "ours_conn_extra": json.loads(args.ours_conn_extra) if args.kind == "ours" and args.ours_conn_extra else None,
        "t0": t0,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "cpu_build_seconds": cpu_build,
        "wait_minutes": wait_minutes,
        "wait_minutes_observed": wait_minutes_observed,
        "cpu_per_1000_wait_minutes": cpu / wm * 1000,
        "rss_baseline_bytes": rss_baseline,
        "rss_peak_bytes": rss_peak,
        "rss_per_wait_bytes": (rss_peak - rss_baseline) / n,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "threads_before": threads0,
        "threads_after": threading.active_count(),
        "requests": requests,
        "ids_looked_up": {k: v for k, v in stats["requests"].items() if k.endswith("_ids")},
        "requests_total": total_requests,
        "requests_per_wait_minute": total_requests / wm,
        "requests_per_wait": total_requests / n,
        "tcp_connections": stats["tcp_connections"],
        "tcp_connections_per_wait_minute": stats["tcp_connections"] / wm,
        "open_connections_peak": stats["open_connections_peak"],
        "ours_pool_size": pool_size,
        "service_cpu_seconds": stats["cpu_seconds"],
        "latency_p50": percentile(latencies, 50),
        "latency_p99": percentile(latencies, 99),
        "latency_max": max(latencies) if latencies else None,
        "latency_min": min(latencies) if latencies else None,
        "events_early": early,
        "waits_with_event": len(waited),
        # A generator still open LINGER s after its event is not a second event: the triggerer
        # cancels a trigger about a second after its event anyway (waits_lingered says how many).
        "waits_exactly_one_event": sum(1 for r in records if r.events == 1 and r.error is None),
        "waits_without_event": n - len(waited),
        "waits_more_than_one_event": sum(1 for r in records if r.events > 1),
        "waits_lingered": sum(1 for r in records if r.lingered),
        "waits_wrong_payload": sum(1 for r in waited if not r.payload_ok),
        "waits_errored": sum(1 for r in records if r.error),
        "errors_sample": sorted({r.error for r in records if r.error})[:5],
        "events_per_wait_min": min((r.events for r in records), default=0),
        "events_per_wait_max": max((r.events for r in records), default=0),
        "loop_max_lag": monitor.max_late,
        "loop_max_lag_startup": monitor.max_late_startup,
        "loop_max_lag_steady": monitor.max_late_steady,
        "loop_stalls_over_0_2s_steady": monitor.stalls_steady,
        "loop_stalls_over_0_2s": monitor.stalls,
        "loop_lag_per_second": [round(v, 4) for v in monitor.per_second],
        **gc_pauses.summary(),
        "gc_frozen_objects": gc.get_freeze_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "timed_out": len(pending),
        "bound_seconds": bound,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--n", type=int, required=True, help="concurrent waits")
    parser.add_argument("--sim", required=True, help="the simulator's base URL, http://127.0.0.1:PORT")
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval of every kind (s)")
    parser.add_argument("--finish-min", type=float, default=30.0)
    parser.add_argument("--finish-max", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ours-poll-policy", default="", help="extra PollPolicy settings for 'ours', as JSON")
    parser.add_argument("--ours-conn-extra", default="", help="extras of the connection 'ours' uses, as JSON")
    parser.add_argument(
        "--provider-src", default=None, help="import jobservice_provider from this source root instead (e.g. a snapshot)"
    )
    parser.add_argument("--out", default=None, help="write the JSON result here (default: stdout)")
    args = parser.parse_args(argv)

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.provider_src:
        sys.path.insert(0, args.provider_src)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))
    os.environ.update(connection_env(args.sim, json.loads(args.ours_conn_extra) if args.ours_conn_extra else None))
    result = asyncio.run(measure(args))
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
