"""The benchmark's entry point: every kind of trigger at every N, side by side, in one invocation.

Usage::

    python bench/run_all.py --n 1000 5000 --ours-n 20000   # the documented full run (~15 min)
    python bench/run_all.py --quick --kinds ours http      # harness check, < 1 min
    python bench/run_all.py --kinds ours --n 1000 5000 --merge   # rerun ours only, keep the others

It starts the simulator (``bench/simulator.py``) in its own process, then runs ``bench/runner.py``
once per (N, kind), sequentially, each in a fresh process, prints one table of absolute numbers
and ratios (ours vs HttpSensorTrigger, ours vs BatchJobTrigger), and writes
``bench/results/latest.json`` and the plot ``docs/img/benchmark.png``. ``--update-docs`` also
regenerates the tables in docs/benchmarks.md (``bench/report.py --update-docs`` does it later).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
from runner import KINDS, TOKEN

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LOGS = BENCH / "results" / "logs"
STARTUP_SLACK = 120.0


class Simulator:
    """``bench/simulator.py`` as a child process; stopped by PID on exit."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Simulator:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "simulator.py"), "--port", "0", "--token", TOKEN],
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "w"),
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("SIMULATOR LISTENING"):
            self.__exit__()
            raise SystemExit(f"the simulator did not start: {line!r}; see {self.log_path}")
        self.url = f"http://127.0.0.1:{int(line.split()[-1])}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    """Read-only git queries, to say which provider code was measured."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def snapshot_provider(into: Path) -> tuple[str, str]:
    """Copy the provider's source, so every run of one invocation measures the same code even
    while people edit the working tree; returns (source root, description)."""
    head = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "provider"))
    target = into / "provider-snapshot"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(ROOT / "provider", target, ignore=shutil.ignore_patterns("__pycache__"))
    described = f"working tree at {head}{' with uncommitted changes' if dirty else ''} (source sha256 {source_digest(target)})"
    return str(target), described


def source_digest(root: Path) -> str:
    """A short hash of a provider source tree's Python files, to tell measured versions apart."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def host_facts(provider_source: str) -> dict[str, Any]:
    head = _git("rev-parse", "--short", "HEAD")
    source = provider_source
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "airflow": _version("apache-airflow"),
        "http_provider": _version("apache-airflow-providers-http"),
        "amazon_provider": _version("apache-airflow-providers-amazon"),
        "aiobotocore": _version("aiobotocore"),
        "aiohttp": _version("aiohttp"),
        "provider_source": source,
        "git_head": head,
    }


def run_one(sim: Simulator, kind: str, n: int, args: argparse.Namespace, log_dir: Path) -> dict[str, Any] | None:
    out = log_dir / f"{kind}-{n}.json"
    log = log_dir / f"{kind}-{n}.log"
    argv = [
        sys.executable,
        str(BENCH / "runner.py"),
        f"--kind={kind}",
        f"--n={n}",
        f"--sim={sim.url}",
        f"--interval={args.interval}",
        f"--finish-min={args.finish_window[0]}",
        f"--finish-max={args.finish_window[1]}",
        f"--seed={args.seed}",
        f"--out={out}",
    ]
    if kind.startswith("ours") and args.ours_poll_policy:
        argv.append(f"--ours-poll-policy={args.ours_poll_policy}")
    if kind == "ours" and args.ours_conn_extra:
        argv.append(f"--ours-conn-extra={args.ours_conn_extra}")
    if args.provider_src:
        argv.append(f"--provider-src={args.provider_src}")
    bound = args.finish_window[1] + max(120.0, 24 * args.interval) + STARTUP_SLACK + n / 100
    print(f"-- {kind} N={n:,} … ", end="", flush=True)
    started = time.monotonic()
    with open(log, "w") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
            code = None
    took = time.monotonic() - started
    if code != 0 or not out.exists():
        print(f"FAILED (exit {code}) after {took:.0f}s; see {log}")
        return None
    result: dict[str, Any] = json.loads(out.read_text())
    result["measured_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result["runner_wall_seconds"] = took
    print(
        f"{took:.0f}s: CPU {result['cpu_seconds']:.1f}s, {result['requests_total']:,} requests, "
        f"{result['tcp_connections']:,} connections, p99 {report._fmt(result['latency_p99'])}s, "
        f"{result['waits_exactly_one_event']}/{n} single events"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--n", nargs="+", type=int, default=None, help="concurrent waits per run (default 1000 5000)")
    parser.add_argument("--ours-n", nargs="*", type=int, default=[], help="more N for our trigger alone (e.g. 20000)")
    parser.add_argument("--interval", type=float, default=None, help="poll interval of every kind, s (default 5)")
    parser.add_argument(
        "--finish-window", nargs=2, type=float, default=None, metavar=("MIN", "MAX"), help="jobs finish uniformly in it (30 90)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="N=20, interval 1 s, window 2–6 s: checks the harness, < 1 min")
    parser.add_argument("--ours-poll-policy", default="", help="extra PollPolicy settings for ours, as JSON")
    parser.add_argument("--ours-conn-extra", default="", help="extras of our connection, as JSON")
    parser.add_argument(
        "--provider-src",
        default=None,
        help="import jobservice_provider from this source root (default: a snapshot of provider/)",
    )
    parser.add_argument("--results", type=Path, default=None, help="JSON output (default bench/results/latest.json)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG output (default docs/img/benchmark.png)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--merge", action="store_true", help="keep results in --results for (N, kind) pairs not rerun")
    parser.add_argument("--update-docs", action="store_true", help="regenerate the tables in docs/benchmarks.md")
    args = parser.parse_args(argv)

    quick = args.quick
    args.n = args.n or ([20] if quick else [1000, 5000])
    args.interval = args.interval or (1.0 if quick else 5.0)
    args.finish_window = args.finish_window or ([2.0, 6.0] if quick else [30.0, 90.0])
    if quick:
        scratch = Path(tempfile.mkdtemp(prefix="bench-quick-"))
        args.results = args.results or scratch / "quick.json"
        args.plot = args.plot or scratch / "quick.png"
    args.results = args.results or report.RESULTS
    args.plot = args.plot or report.PLOT
    log_dir = LOGS if not quick else args.results.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    if args.provider_src:
        described = f"{args.provider_src} (source sha256 {source_digest(Path(args.provider_src))})"
    else:
        args.provider_src, described = snapshot_provider(log_dir)
    plan = [(n, kind) for n in args.n for kind in args.kinds]
    plan += [(n, "ours") for n in args.ours_n if (n, "ours") not in plan]
    command = "python bench/run_all.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"{len(plan)} runs: " + ", ".join(f"{kind} N={n:,}" for n, kind in plan))
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    started = time.monotonic()
    with Simulator(log_dir / "simulator.log") as sim:
        for n, kind in plan:
            result = run_one(sim, kind, n, args, log_dir)
            if result is None:
                failed.append(f"{kind} N={n}")
            else:
                results.append(result)
    total = time.monotonic() - started

    if args.merge and args.results.exists():
        rerun = {(r["n"], r["kind"]) for r in results}
        kept = [r for r in report.load(args.results)["results"] if (r["n"], r["kind"]) not in rerun]
        results = kept + results
    doc = {
        "generated_at": report.now_iso(),
        "command": command,
        "total_seconds": total,
        "host": host_facts(described),
        "config": {
            "interval": args.interval,
            "finish_window": args.finish_window,
            "seed": args.seed,
            "kinds": args.kinds,
            "n": args.n,
            "ours_n": args.ours_n,
            "ours_poll_policy": args.ours_poll_policy or None,
            "ours_conn_extra": args.ours_conn_extra or None,
            "merged": args.merge,
        },
        "failed": failed,
        "results": results,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=1))
    print()
    print(report.markdown(doc))
    if not args.no_plot and results:
        report.plot(doc, args.plot)
    if args.update_docs:
        real = report.load(report.REAL_RESULTS) if report.REAL_RESULTS.exists() else None
        report.update_doc(report.DOC, doc, real)
    where = f"results: {args.results}" + ("" if args.no_plot else f"; plot: {args.plot}")
    print(f"\n{len(results)} runs in {total / 60:.1f} min; {where}")
    if failed:
        print("FAILED: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
