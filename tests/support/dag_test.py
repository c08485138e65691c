"""Running Airflow the way the e2e, Ray and Prefect tiers do: a DAG by ``dag.test()`` in its own
process (tests/e2e/run_dag.py), and a trigger rebuilt from its serialized form, as the triggerer runs it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobservice_provider.triggers.jobservice import JobStatusTrigger

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "tests" / "e2e" / "run_dag.py"
RESULT_PREFIX = "DAGTEST-RESULT "


def dag_test_summary(stdout: str, output: str) -> dict[str, Any]:
    """The summary run_dag.py printed last; fails showing the tail of ``output`` when there is none."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert lines, output[-4000:]
    summary: dict[str, Any] = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    return summary


def run_dag_file(dag_file: Path, *args: str, env: Mapping[str, str], runner: Path = RUNNER) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of a DAG of ``dag_file`` in its own process (``args``: DAG id, run conf JSON,
    logical date, as run_dag.py takes them); its summary and everything it printed. ``runner``:
    run_dag.py, or scripts/dagtest_runner.py (the demo's, for a file's only DAG)."""
    command: Sequence[str] = [sys.executable, str(runner), str(dag_file), *args]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(env), timeout=300, cwd=REPO)
    output = done.stdout + done.stderr
    return dag_test_summary(done.stdout, output), output


def run_trigger(trigger: JobStatusTrigger) -> dict[str, Any]:
    """The first event's payload of ``trigger`` rebuilt from its serialized form, as the triggerer runs it."""
    _, kwargs = trigger.serialize()

    async def first_event() -> dict[str, Any]:
        event = await anext(JobStatusTrigger(**kwargs).run())
        payload: dict[str, Any] = event.payload
        return payload

    return asyncio.run(first_event())
