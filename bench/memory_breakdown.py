"""Where a waiting trigger's memory goes: tracemalloc, grouped by who allocated it.

Usage::

    python bench/memory_breakdown.py --kind ours --n 2000
    python bench/memory_breakdown.py --kind floor --n 2000

It starts the simulator, builds N triggers of one kind the way ``runner.py`` does, admits them
as the triggerer does, lets them wait 12 s (the jobs finish later) and compares tracemalloc
snapshots taken before the tasks started and while they wait. Every allocation still alive is
charged to the innermost frame of its traceback that belongs to a known owner: this provider,
greenback (the portal Airflow's triggerer opens for every trigger), asyncio (the task itself),
logging (structlog and Airflow's logging), the benchmark harness, or something else. Python
allocations only: the allocator's own overhead, which RSS includes, is not in these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import runner
from run_all import LOGS, Simulator

OWNERS = (
    ("jobservice_provider", "this provider"),
    ("greenback", "greenback portal (Airflow's triggerer, every trigger)"),
    ("structlog", "logging (structlog / Airflow)"),
    ("airflow/_shared/logging", "logging (structlog / Airflow)"),
    ("airflow/sdk/log", "logging (structlog / Airflow)"),
    ("asyncio", "asyncio task"),
    ("_weakrefset", "asyncio task"),
    ("bench/", "benchmark harness"),
)
WAIT_SECONDS = 12.0


def owner(traceback: tracemalloc.Traceback) -> str:
    for frame in reversed(traceback):  # innermost first
        for marker, name in OWNERS:
            if marker in frame.filename:
                return name
    return "other"


async def measure(kind: str, n: int, sim_url: str) -> dict[str, float]:
    setup = runner.sim_call(sim_url, "/_bench/setup", {"n": n})
    ids: list[str] = setup["ids"]
    await runner.warm_up(kind, setup["warm_id"], 5.0, {})
    # The jobs finish well after the snapshot, so every trigger is waiting when it is taken.
    runner.sim_call(sim_url, "/_bench/start", {"finish_min": 60.0, "finish_max": 90.0, "seed": 1})
    finish = runner.sim_call(sim_url, "/_bench/stats")["finish"] if kind == "floor" else {}
    triggers = [runner.rebuild(runner.make_trigger(kind, job_id, 5.0, {}, finish.get(job_id))) for job_id in ids]
    records = [runner.WaitRecord(job_id) for job_id in ids]
    gc.collect()
    tracemalloc.start(25)
    before = tracemalloc.take_snapshot()
    tasks = await runner.admit(kind, triggers, records)
    del triggers
    await asyncio.sleep(WAIT_SECONDS)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_owner: dict[str, float] = defaultdict(float)
    for stat in after.compare_to(before, "traceback"):
        per_owner[owner(stat.traceback)] += stat.size_diff / n
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dict(per_owner)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=runner.KINDS, default="ours")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))
    with Simulator(LOGS / "memory-breakdown-simulator.log") as sim:
        os.environ.update(runner.connection_env(sim.url))
        per_owner = asyncio.run(measure(args.kind, args.n, sim.url))
    print(f"{args.kind}, N={args.n:,}: Python memory held per waiting trigger, by owner")
    for name, size in sorted(per_owner.items(), key=lambda item: -item[1]):
        print(f"  {size:8.0f} B  {name}")
    print(f"  {sum(per_owner.values()):8.0f} B  in all (before the allocator's own overhead)")


if __name__ == "__main__":
    main()
