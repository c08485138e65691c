"""Tables, acceptance checks and the plot, from the benchmark's JSON results.

Usage::

    python bench/report.py                       # print the tables for bench/results/latest.json
    python bench/report.py --results other.json  # ... for another run's results
    python bench/report.py --update-docs         # also rewrite the generated blocks of docs/benchmarks.md
                                                 # (between its BEGIN/END GENERATED markers) and
                                                 # redraw docs/img/benchmark.png

To regenerate the docs from new measurements: ``python bench/run_all.py`` (writes
bench/results/latest.json; ``--update-docs`` rewrites the doc too), ``python bench/real_triggerer.py``
(bench/results/real_triggerer.json), then ``python bench/report.py --update-docs``.
``run_all.py`` and ``real_triggerer.py`` call the same functions, so the doc's tables are always
regenerated from the stored results, never typed in.

Kinds: ``ours`` (JobStatusTrigger, native API with the watch), ``ours-poll`` (the same trigger
polling the same API without the watch), ``http`` (HttpSensorTrigger), ``batch``
(BatchJobTrigger) and ``floor`` (DateTimeTrigger: no requests, the triggerer's own cost per trigger).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
REAL_RESULTS = ROOT / "bench" / "results" / "real_triggerer.json"
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "img" / "benchmark.png"
KIND_ORDER = ("ours", "ours-poll", "ours-prefect", "http", "batch", "floor")
# Our trigger's kinds: the watch (the main result) and plain polling of the same API.
OURS_KINDS = ("ours", "ours-poll", "ours-prefect")
# The lag panel is on a log scale; lateness below a millisecond is drawn at a millisecond.
LAG_FLOOR = 0.001
LAG_BIN = 5
KIND_LABEL = {
    "ours": "JobStatusTrigger (ours)",
    "ours-poll": "JobStatusTrigger (ours, polling)",
    "ours-prefect": "JobStatusTrigger (ours, prefect preset, polling)",
    "http": "HttpSensorTrigger",
    "batch": "BatchJobTrigger",
    "floor": "DateTimeTrigger (floor: the triggerer's own cost)",
}
# Short names for the ratio rows and the checks.
KIND_SHORT = {"ours": "ours", "ours-poll": "ours (polling)", "ours-prefect": "ours (prefect preset)"}
KIND_COLOUR = {
    "ours": "#1b9e77",
    "ours-poll": "#66c2a5",
    "ours-prefect": "#a6d854",
    "http": "#7570b3",
    "batch": "#d95f02",
    "floor": "#999999",
}
MARKERS = {
    "table": ("<!-- BEGIN GENERATED: bench table (bench/report.py) -->", "<!-- END GENERATED: bench table -->"),
    "real": ("<!-- BEGIN GENERATED: real triggerer (bench/report.py) -->", "<!-- END GENERATED: real triggerer -->"),
}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01:
        return f"{value:.{digits}f}"
    return f"{value:.1e}"


def _count_or_fmt(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and value >= 1 else _fmt(value)


def _ratio(other: float | None, ours: float | None) -> str:
    if other is None or ours is None:
        return "–"
    if ours <= 0:
        return "∞" if other > 0 else "–"
    return f"{other / ours:,.1f}×" if other / ours < 100 else f"{other / ours:,.0f}×"


def _kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def by_key(results: Iterable[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(r["n"], r["kind"]): r for r in results}


def _kb(r: dict[str, Any]) -> float:
    return float(r["rss_per_wait_bytes"]) / 1024


def _lag(r: dict[str, Any], phase: str) -> float:
    """Max loop lag while the N triggers were being started, or after (older results: overall)."""
    return float(r.get(f"loop_max_lag_{phase}", r["loop_max_lag"]))


def _events(r: dict[str, Any]) -> str:
    good, n = r["waits_exactly_one_event"], r["n"]
    text = f"all {n:,}" if good == n else f"{good:,}/{n:,}"
    if r.get("waits_without_event"):
        text += f" ({r['waits_without_event']:,} had none {r.get('bound_seconds', 0):.0f} s after start)"
    return text


COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("CPU s", lambda r: _fmt(r["cpu_seconds"])),
    ("CPU s / 1,000 wait-min", lambda r: _fmt(r["cpu_per_1000_wait_minutes"])),
    ("RSS / wait (KB)", lambda r: _fmt(_kb(r), 1)),
    ("requests", lambda r: f"{r['requests_total']:,}"),
    ("requests / wait-min", lambda r: _fmt(r["requests_per_wait_minute"])),
    ("TCP conns", lambda r: f"{r['tcp_connections']:,}"),
    ("latency p50 / p99 / max (s)", lambda r: " / ".join(_fmt(r[k]) for k in ("latency_p50", "latency_p99", "latency_max"))),
    ("exactly 1 event", _events),
    ("max loop lag: start / steady (s)", lambda r: f"{_fmt(_lag(r, 'startup'))} / {_fmt(_lag(r, 'steady'))}"),
    ("stalls > 0.2 s (steady)", lambda r: str(r.get("loop_stalls_over_0_2s_steady", r["loop_stalls_over_0_2s"]))),
    # Results recorded before the GC pauses were measured have no figure: "–".
    ("longest GC pause (s)", lambda r: _fmt(r.get("gc_max_pause"))),
]

RATIO_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], float | None]]] = [
    ("CPU / 1,000 wait-min", lambda r: r["cpu_per_1000_wait_minutes"]),
    ("RSS / wait", _kb),
    ("requests / wait-min", lambda r: r["requests_per_wait_minute"]),
    ("TCP conns", lambda r: r["tcp_connections"]),
]


def results_table(results: Sequence[dict[str, Any]]) -> str:
    """One markdown table of absolute numbers, one row per (N, kind)."""
    header = ["N", "trigger", *(name for name, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ordered = sorted(results, key=lambda r: (r["n"], _kind_rank(r["kind"])))
    for r in ordered:
        cells = [f"{r['n']:,}", KIND_LABEL.get(r["kind"], r["kind"]), *(fmt(r) for _, fmt in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(results: Sequence[dict[str, Any]]) -> str:
    """How many times more the others need than ours (higher is better for ours)."""
    keyed = by_key(results)
    header = ["N", "compared", *(name for name, _ in RATIO_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in sorted({r["n"] for r in results}):
        for ours_kind in OURS_KINDS:
            ours = keyed.get((n, ours_kind))
            if ours is None:
                continue
            for other_kind in ("http", "batch"):
                other = keyed.get((n, other_kind))
                if other is None:
                    continue
                cells = [f"{n:,}", f"{KIND_LABEL[other_kind]} ÷ {KIND_SHORT[ours_kind]}"]
                cells += [_ratio(get(other), get(ours)) for _, get in RATIO_COLUMNS]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _checks_of(
    label: str,
    ours: dict[str, Any],
    others: dict[str, dict[str, Any] | None],
    *,
    p99: bool,
    p50: bool,
) -> list[tuple[bool, str]]:
    """The targets for one run of our trigger (with the watch or polling); ``others``: same N, by kind."""
    n = ours["n"]
    http, batch, floor = others.get("http"), others.get("batch"), others.get("floor")
    out: list[tuple[bool, str]] = []
    cpu = ours["cpu_per_1000_wait_minutes"]
    if http:
        target = http["cpu_per_1000_wait_minutes"] / 10
        out.append((cpu <= target, f"{label}: CPU/1,000 wait-min {cpu:.2f} s ≤ 1/10 of HttpSensorTrigger's ({target:.2f} s)"))
        req, req_target = ours["requests_per_wait_minute"], http["requests_per_wait_minute"] / 50
        text = f"{label}: requests/wait-min {req:.3f} ≤ 1/50 of HttpSensorTrigger's ({req_target:.3f})"
        out.append((req <= req_target, text))
    if batch:
        target = batch["cpu_per_1000_wait_minutes"] / 50
        out.append((cpu <= target, f"{label}: CPU/1,000 wait-min {cpu:.2f} s ≤ 1/50 of BatchJobTrigger's ({target:.2f} s)"))
    pool = ours.get("ours_pool_size")
    if pool:
        conns = ours["tcp_connections"]
        out.append((conns <= pool, f"{label}: TCP connections {conns} ≤ pool size {pool}"))
    kb = _kb(ours)
    text = f"{label}: RSS per wait {kb:.1f} KB ≤ 10 KB"
    if floor:
        # Context only: the criterion stays on the raw figure.
        floor_kb, who = _kb(floor), KIND_SHORT.get(ours["kind"], ours["kind"])
        over = f"adds {kb - floor_kb:.1f} KB over it" if kb >= floor_kb else f"needs {floor_kb - kb:.1f} KB less"
        text += f" (floor: DateTimeTrigger needs {floor_kb:.1f} KB; {who} {over})"
    out.append((kb <= 10, text))
    latency_p99, limit = ours["latency_p99"], ours["interval"] * 1.3 + 1
    if p99 and latency_p99 is not None:
        how = " with polling" if ours["kind"] in ("ours-poll", "ours-prefect") else ""
        text = f"{label}: latency p99 {latency_p99:.2f} s ≤ {limit:.1f} s (interval × 1.3 + 1 s){how}"
        out.append((latency_p99 <= limit, text))
    latency_p50 = ours["latency_p50"]
    # "longpoll" also matches the batch long-poll counters of results recorded before POST /v1/watch.
    waited_on_server = any("longpoll" in kind or kind == "native_watch" for kind in ours["requests"])
    if p50 and latency_p50 is not None and waited_on_server:
        out.append((latency_p50 <= 1.0, f"{label}: latency p50 {latency_p50:.2f} s ≤ 1 s with long-poll/watch"))
    once = ours["waits_exactly_one_event"] == n
    out.append((once, f"{label}: every wait fired exactly one event ({ours['waits_exactly_one_event']}/{n})"))
    lag, start = _lag(ours, "steady"), _lag(ours, "startup")
    text = f"{label}: no event-loop stall over 0.2 s once running (max lag {lag:.3f} s; starting all N at once {start:.3f} s)"
    out.append((lag <= 0.2, text))
    return out


def checks(results: Sequence[dict[str, Any]]) -> list[tuple[bool, str]]:
    """The issue's acceptance targets, evaluated on whatever results are present.

    CPU, requests, TCP connections, RSS, single events and loop stalls: for ``ours`` and, as
    separate lines, ``ours-poll``. Latency p99 ≤ interval × 1.3 + 1 s is the target "with polling":
    on ``ours-poll`` (on ``ours`` when there is no polling run); p50 ≤ 1 s "with long-poll/watch"
    on ``ours``.
    """
    keyed = by_key(results)
    out: list[tuple[bool, str]] = []
    for n in sorted({r["n"] for r in results}):
        ours, polling = keyed.get((n, "ours")), keyed.get((n, "ours-poll"))
        others = {kind: keyed.get((n, kind)) for kind in ("http", "batch", "floor")}
        if ours is not None:
            out += _checks_of(f"N={n:,}", ours, others, p99=polling is None, p50=True)
        if polling is not None:
            out += _checks_of(f"N={n:,}, {KIND_SHORT['ours-poll']}", polling, others, p99=True, p50=False)
        prefect = keyed.get((n, "ours-prefect"))
        if prefect is not None:
            out += _checks_of(f"N={n:,}, {KIND_SHORT['ours-prefect']}", prefect, others, p99=True, p50=False)
    return out


def _when(doc: dict[str, Any]) -> str:
    return str(doc.get("generated_at", "?"))


def markdown(doc: dict[str, Any]) -> str:
    """The generated block of docs/benchmarks.md: run facts, the table, ratios and checks."""
    results = doc["results"]
    config = doc.get("config", {})
    host = doc.get("host", {})
    window = config.get("finish_window", ["?", "?"])
    parts = [
        f"Run {_when(doc)} with `{doc.get('command', 'bench/run_all.py')}`: poll interval {config.get('interval', '?')} s, "
        f"jobs finishing uniformly over {window[0]}–{window[1]} s, seed {config.get('seed', '?')}; "
        f"{host.get('cpus', '?')} CPUs, {host.get('memory_gb', '?')} GB, Python {host.get('python', '?')}, "
        f"Airflow {host.get('airflow', '?')}, http provider {host.get('http_provider', '?')}, "
        f"amazon provider {host.get('amazon_provider', '?')} (aiobotocore {host.get('aiobotocore', '?')}); "
        f"provider source {host.get('provider_source', '?')}.",
        "",
        results_table(results),
    ]
    if any(r["kind"] == "floor" for r in results):
        parts += [
            "",
            f"{KIND_LABEL['floor']}: Airflow's DateTimeTrigger firing at each job's finish time. It makes no "
            "requests; its figures are what the triggerer machinery itself (asyncio task, greenback portal, "
            "logger) costs per trigger, the least any wait can cost. Its latency is only how often it looks "
            "at the clock (once a second).",
        ]
    batching = []
    for r in sorted((r for r in results if r["kind"] in OURS_KINDS), key=lambda r: (r["n"], _kind_rank(r["kind"]))):
        calls = sum(v for k, v in r["requests"].items() if k.startswith(("native_batch", "prefect_filter")))
        ids = sum(v for k, v in r["ids_looked_up"].items() if k.startswith(("native_batch", "prefect_filter")))
        if calls:
            how = {"ours-poll": " with polling", "ours-prefect": " (prefect preset)"}.get(r["kind"], "")
            batching.append(f"{ids / calls:.1f} at N = {r['n']:,}{how}")
    if batching:
        parts += ["", "Job ids per batch lookup of our trigger (at most 100): " + ", ".join(batching) + "."]
    ratios = ratio_table(results)
    if ratios:
        parts += ["", "How many times more the others need than ours (higher is better for ours):", "", ratios]
    found = checks(results)
    if found:
        parts += ["", "The issue's acceptance targets, on these numbers:", ""]
        parts += [f"- {'✅' if ok else '❌'} {text}" for ok, text in found]
    loads = [r.get("loadavg_before", [None])[0] for r in results]
    loads = [v for v in loads if v is not None]
    if loads:
        parts += [
            "",
            f"Machine load (1-min load average at the start of each run): {min(loads):.1f}–{max(loads):.1f} "
            f"on {host.get('cpus', '?')} CPUs; other test suites were running at the same time.",
        ]
    return "\n".join(parts)


def real_markdown(doc: dict[str, Any]) -> str:
    """The generated block for the run inside a real ``airflow triggerer``."""
    rows = doc["results"]
    header = [
        "trigger",
        "N",
        "triggerer CPU s (whole tree)",
        "… of which trigger runner",
        "idle CPU s for as long",
        "CPU s / 1,000 wait-min (net of idle)",
        "runner RSS / wait (KB)",
        "requests / wait-min",
        "TCP conns",
        "latency p50 / p99 / max (s)",
        "events",
        "'blocked' warnings",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lat = " / ".join(_fmt(r.get(k)) for k in ("latency_p50", "latency_p99", "latency_max"))
        cells = [
            KIND_LABEL.get(r["kind"], r["kind"]),
            f"{r['n']:,}",
            _fmt(r["cpu_tree_seconds"]),
            _fmt(r["cpu_runner_seconds"]),
            _fmt(r["cpu_idle_equivalent_seconds"]),
            _fmt(r["cpu_net_per_1000_wait_minutes"]),
            _fmt(r["runner_rss_per_wait_bytes"] / 1024, 1),
            _fmt(r["requests_per_wait_minute"]),
            f"{r['tcp_connections']:,}",
            lat,
            f"{r['waits_fired']}/{r['n']} fired, {r['trigger_events_logged']} 'fired' log lines",
            str(r["blocked_warnings"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    intro = (
        f"Run {doc.get('generated_at', '?')} with `{doc.get('command', 'bench/real_triggerer.py')}` "
        f"(Airflow {doc.get('airflow', '?')}, SQLite, provider {doc.get('provider_source', '?')}, "
        f"poll interval {doc.get('interval', '?')} s, "
        f"jobs finishing over {doc.get('finish_window', ['?', '?'])[0]}–{doc.get('finish_window', ['?', '?'])[1]} s)."
    )
    return intro + "\n\n" + "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    begin, end = MARKERS[name]
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOC}: markers for the generated {name!r} block are missing ({begin} … {end})")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)


def update_doc(doc_path: Path, results: dict[str, Any] | None, real: dict[str, Any] | None) -> None:
    text = doc_path.read_text()
    if results is not None:
        text = replace_block(text, "table", markdown(results))
    if real is not None:
        text = replace_block(text, "real", real_markdown(real))
    doc_path.write_text(text)


def plot(doc: dict[str, Any], path: Path) -> None:
    """Grouped bars (log scale) of the main figures per N and kind, plus the loop lag over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = doc["results"]
    keyed = by_key(results)
    ns = sorted({r["n"] for r in results})
    kinds = [k for k in KIND_ORDER if any(r["kind"] == k for r in results)]
    # (title, figure, log scale, kinds the panel leaves out: the floor makes no requests and opens
    # no connections of its own, and a zero has no place on a log scale)
    panels: list[tuple[str, Callable[[dict[str, Any]], float | None], bool, tuple[str, ...]]] = [
        ("CPU seconds per 1,000 wait-minutes", lambda r: r["cpu_per_1000_wait_minutes"], True, ()),
        ("requests per wait-minute", lambda r: r["requests_per_wait_minute"], True, ("floor",)),
        ("TCP connections opened", lambda r: max(r["tcp_connections"], 0.5), True, ("floor",)),
        ("RSS per waiting task (KB)", lambda r: max(_kb(r), 0.1), True, ()),
        ("detection latency p99 (s)", lambda r: r["latency_p99"], False, ()),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    flat = list(axes.flat)
    width = 0.8 / max(1, len(kinds))
    for ax, (title, get, log, left_out) in zip(flat, panels, strict=False):
        for i, kind in enumerate(kinds):
            if kind in left_out:
                continue
            xs, ys = [], []
            for j, n in enumerate(ns):
                r = keyed.get((n, kind))
                value = get(r) if r else None
                if value is not None and not (log and value <= 0) and not math.isnan(value):
                    xs.append(j + (i - (len(kinds) - 1) / 2) * width)
                    ys.append(value)
            bars = ax.bar(xs, ys, width=width * 0.95, color=KIND_COLOUR.get(kind), label=KIND_LABEL.get(kind, kind))
            for bar, y in zip(bars, ys, strict=True):
                ax.annotate(
                    _count_or_fmt(y),
                    (bar.get_x() + bar.get_width() / 2, y),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 1),
                    textcoords="offset points",
                )
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(ns)), [f"N = {n:,}" for n in ns])
        # The same slots in every panel, whether or not a panel leaves a kind out.
        ax.set_xlim(-0.5, len(ns) - 0.5)
        if log:
            ax.set_yscale("log")
            ax.margins(y=0.25)
        else:
            ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    lag_ax = flat[5]
    top_n = max((n for n in ns if all((n, k) in keyed for k in kinds)), default=ns[-1] if ns else None)
    for kind in kinds:
        r = keyed.get((top_n, kind)) if top_n is not None else None
        if r and r.get("loop_lag_per_second"):
            series = r["loop_lag_per_second"]
            binned = [max(max(series[i : i + LAG_BIN]), LAG_FLOOR) for i in range(0, len(series), LAG_BIN)]
            xs = [i * LAG_BIN for i in range(len(binned))]
            lag_ax.step(xs, binned, where="post", color=KIND_COLOUR.get(kind), label=KIND_LABEL.get(kind, kind), lw=1.3)
    lag_ax.set_yscale("log")
    # Always up to the 0.2 s line, even when every kind stays far below it (the floor, small N).
    lag_ax.set_ylim(LAG_FLOOR * 0.8, max(lag_ax.get_ylim()[1], 0.5))
    lag_ax.axhline(0.2, color="grey", ls="--", lw=0.8)
    lag_ax.annotate(
        "0.2 s: the triggerer's 'blocked' warning",
        (1.0, 0.2),
        xycoords=("axes fraction", "data"),
        ha="right",
        va="bottom",
        fontsize=7,
        color="grey",
    )
    lag_ax.set_title(f"event-loop lag (max per {LAG_BIN} s) at N = {top_n:,}" if top_n else "event-loop lag", fontsize=10)
    lag_ax.set_xlabel("seconds since start")
    lag_ax.set_ylabel("max lateness of a 50 ms sleep (s)")
    lag_ax.grid(alpha=0.3)
    handles, labels = flat[0].get_legend_handles_labels()
    config = doc.get("config", {})
    window = config.get("finish_window", ["?", "?"])
    fig.suptitle(
        f"N concurrent waits in one event loop, poll interval {config.get('interval', '?')} s, jobs finishing over "
        f"{window[0]}–{window[1]} s (lower is better) — {_when(doc)[:10]}",
        fontsize=11,
    )
    columns = len(kinds) if len(kinds) <= 3 else math.ceil(len(kinds) / 2)
    rows = math.ceil(len(kinds) / columns) if kinds else 1
    fig.legend(handles, labels, loc="lower center", ncol=columns, frameon=False)
    fig.tight_layout(rect=(0, 0.02 + 0.025 * rows, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--real-results", type=Path, default=REAL_RESULTS)
    parser.add_argument("--update-docs", action="store_true", help=f"rewrite the generated blocks of {DOC.name} and the plot")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    results = load(args.results) if args.results.exists() else None
    real = load(args.real_results) if args.real_results.exists() else None
    if results:
        print(markdown(results))
    if real:
        print("\nInside a real airflow triggerer:\n")
        print(real_markdown(real))
    if args.update_docs:
        update_doc(args.doc, results, real)
        if results:
            plot(results, args.plot)
        print(f"\nupdated {args.doc} and {args.plot}")


if __name__ == "__main__":
    main()
