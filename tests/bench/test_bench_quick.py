"""The benchmark harness works end to end (``bench/run_all.py --quick``): not the performance targets.

The figures themselves live in docs/benchmarks.md; here we only check that a run measures what it
claims: every wait got exactly one event with the right payload, the simulator counted requests
and connections, latency was computed against the real finish times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.bench, pytest.mark.timeout(240)]


def _needs_bench_extra() -> None:
    """Skip unless every requirement of the provider's ``bench`` extra is installed (CI installs it first)."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    wanted = [Requirement(line) for line in requires("airflow-provider-jobservice") or []]
    bench = [r for r in wanted if r.marker is not None and r.marker.evaluate({"extra": "bench"})]
    assert bench, "the provider declares no bench extra"
    missing = []
    for requirement in bench:
        try:
            version(requirement.name)
        except PackageNotFoundError:
            missing.append(requirement.name)
    if missing:
        pytest.skip(
            f"the benchmark's extra is not installed (missing {', '.join(missing)}): "
            "./dev extra bench (what .ci/setup.d/50-bench.sh does)"
        )


def _call(base: str, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers=headers or {},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def simulator() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "simulator.py"), "--port", "0", "--token", "t0k"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("SIMULATOR LISTENING"), line
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_simulator_speaks_native_http_and_batch(simulator: str) -> None:
    from jobservice_provider.core.job import Job
    from jobservice_provider.core.status import JobStatus

    auth = {"Authorization": "Bearer t0k"}
    ids = _call(simulator, "/_bench/setup", {"n": 2})["ids"]
    # Jobs end 3 s in, so the checks below still see them RUNNING on a loaded machine.
    _call(simulator, "/_bench/start", {"finish_min": 3.0, "finish_max": 3.5, "seed": 3})

    running = Job.from_json(_call(simulator, f"/v1/jobs/{ids[0]}", headers=auth))
    assert (running.status, running.version) == (JobStatus.RUNNING, 2)
    batch = _call(simulator, f"/v1/jobs?id={ids[0]}&id={ids[1]}&id=j_unknown", headers=auth)
    assert [Job.from_json(j).id for j in batch["jobs"]] == ids and batch["missing"] == ["j_unknown"]
    with pytest.raises(urllib.error.HTTPError) as not_yet:
        _call(simulator, f"/http/jobs/{ids[0]}")
    assert not_yet.value.code == 404
    described = _call(simulator, "/v1/describejobs", {"jobs": [ids[0]]})
    assert [j["status"] for j in described["jobs"]] == ["RUNNING"]

    # Long-poll: held until the job finishes (its only change), then the new version.
    started = time.monotonic()
    done = Job.from_json(_call(simulator, f"/v1/jobs/{ids[0]}?wait_s=10&seen=2", headers=auth))
    assert (done.status, done.version) == (JobStatus.SUCCEEDED, 3)
    assert time.monotonic() - started < 5
    assert _call(simulator, f"/http/jobs/{ids[0]}") == {"status": "SUCCEEDED"}

    # The watch: only the jobs whose version differs from the caller's (held until there is one),
    # and at once the ids that do not exist.
    started = time.monotonic()
    changed = _call(simulator, "/v1/watch", {"seen": {ids[0]: 3, ids[1]: 2}, "wait_s": 10}, headers=auth)
    assert [(j["id"], j["status"], j["version"]) for j in changed["jobs"]] == [(ids[1], "SUCCEEDED", 3)]
    assert changed["missing"] == [] and time.monotonic() - started < 5
    gone = _call(simulator, "/v1/watch", {"seen": {ids[0]: 3, "j_unknown": 2}, "wait_s": 10}, headers=auth)
    assert gone == {"jobs": [], "missing": ["j_unknown"]}

    stats = _call(simulator, "/_bench/stats")
    assert stats["requests"] == {
        "native_get": 1,
        "native_batch": 1,
        "native_batch_ids": 3,
        "http": 2,
        "batch_describe": 1,
        "batch_describe_ids": 1,
        "native_longpoll": 1,
        "native_watch": 2,
        "native_watch_ids": 4,
    }
    # Every urllib call above is its own connection; the stats call itself is not counted.
    assert stats["tcp_connections"] == 9
    assert set(stats["finish"]) == set(ids)


def test_quick_run_of_ours_and_http(tmp_path: Path) -> None:
    _needs_bench_extra()
    results, plot = tmp_path / "quick.json", tmp_path / "quick.png"
    kinds = ["ours", "ours-poll", "ours-prefect", "http", "floor"]
    proc = subprocess.run(
        [sys.executable, "bench/run_all.py", "--quick", "--kinds", *kinds, f"--results={results}", f"--plot={plot}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(results.read_text())
    by_kind = {r["kind"]: r for r in doc["results"]}
    assert set(by_kind) == set(kinds)
    for kind, r in by_kind.items():
        n = r["n"]
        assert r["waits_exactly_one_event"] == n, (kind, r)
        assert (r["waits_wrong_payload"], r["waits_errored"], r["timed_out"]) == (0, 0, 0), (kind, r)
        assert r["events_per_wait_min"] == r["events_per_wait_max"] == 1
        assert r["cpu_seconds"] > 0 and r["wait_minutes"] > 0
        # Latency is event time minus the simulator's finish time: never negative, bounded by the poll.
        assert 0 <= r["latency_min"] <= r["latency_p50"] <= r["latency_p99"] <= r["latency_max"], (kind, r)
        assert r["latency_max"] < 10 * r["interval"]
        assert r["loop_lag_per_second"] and r["loop_max_lag"] >= 0
        assert r["rss_peak_bytes"] >= r["rss_baseline_bytes"] > 0
        assert r["gc_collections"] >= r["gc_full_collections"] >= 0 and r["gc_max_pause"] >= r["gc_full_max_pause"] >= 0
    n = by_kind["http"]["n"]
    http, ours, polling, floor = by_kind["http"], by_kind["ours"], by_kind["ours-poll"], by_kind["floor"]
    # HttpSensorTrigger asks once per wait and poll; it opens a new ClientSession per poll: the
    # counter must see about one connection per request.
    assert http["requests_total"] >= n and http["tcp_connections"] >= 0.9 * http["requests_total"], http
    # Ours coalesces its checks into batch lookups and then waits on the watch: a fraction of
    # HttpSensorTrigger's one request per wait and poll (at this tiny N, ~15 against ~100).
    assert 0 < 2 * ours["requests_total"] < http["requests_total"] and ours["requests"].get("native_watch", 0) > 0, ours
    assert ours["tcp_connections"] > 0, ours
    # Polling: batch lookups only, never the watch.
    assert polling["requests_total"] > 0 and set(polling["requests"]) == {"native_batch"}, polling
    assert polling["tcp_connections"] > 0, polling
    # The prefect preset polls Prefect-shaped flow runs: flow run filters only.
    prefect = by_kind["ours-prefect"]
    assert prefect["requests_total"] > 0 and set(prefect["requests"]) == {"prefect_filter"}, prefect
    # The floor waits for the clock alone.
    assert not any(kind.startswith("native") for kind in floor["requests"]) and floor["requests_total"] == 0, floor
    assert "| 20 | JobStatusTrigger (ours) |" in proc.stdout and "| 20 | JobStatusTrigger (ours, polling) |" in proc.stdout
    assert "| 20 | DateTimeTrigger (floor: the triggerer's own cost) |" in proc.stdout
    assert "HttpSensorTrigger ÷ ours |" in proc.stdout and "HttpSensorTrigger ÷ ours (polling) |" in proc.stdout
    assert "N=20, ours (polling): latency p99" in proc.stdout and "(floor: DateTimeTrigger needs" in proc.stdout
    assert plot.stat().st_size > 20_000
