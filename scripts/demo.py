"""The README's demo: the example DAG against the embedded local job service, in a throwaway Airflow home.

Starts ``jobservice-local`` on a free port, points ``jobservice_default`` at it, migrates a
fresh SQLite metadata DB, runs ``dags_examples/example_submit_and_wait.py`` with
``dag.test()`` and prints the job's life as it happens, then the final job record and its
result. Everything it creates lives in a temporary directory that is removed afterwards
(``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jobservice_local.testing import LocalServiceProcess
from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig

REPO = Path(__file__).resolve().parents[1]
DAG_FILE = REPO / "dags_examples" / "example_submit_and_wait.py"
RUNNER = REPO / "scripts" / "dagtest_runner.py"
# One structlog line of dag.test(): "<timestamp> [<level>] <message> [<logger>] key=value…"
LOG_LINE = re.compile(r"^\S+\s+\[(?P<level>\w+)\s*\]\s+(?P<message>.*?)\s+\[(?P<logger>[\w.]+)\]")
# What a user wants to see of the run: our operator and trigger, and Airflow's deferral steps.
SHOWN = (
    (re.compile(r"jobservice_provider\."), None),
    (re.compile(r"airflow\.sdk\.definitions\.dag"), re.compile(r"starting task_id|running trigger in line|Trigger completed")),
    (re.compile(r"^task$"), re.compile(r"Pausing task as DEFERRED")),
    (re.compile(r"_PythonDecoratedOperator"), re.compile(r"Returned value")),
)


def shown(logger: str, message: str) -> bool:
    return any(lp.search(logger) and (mp is None or mp.search(message)) for lp, mp in SHOWN)


def say(start: float, text: str) -> None:
    print(f"[{time.monotonic() - start:6.1f}s] {text}", flush=True)


def run_dag(env: dict[str, str], start: float) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, str(RUNNER), str(DAG_FILE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    summary: dict[str, Any] = {}
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-40:], line]
        if line.startswith("DAGTEST-RESULT "):
            summary = json.loads(line.removeprefix("DAGTEST-RESULT "))
        elif (match := LOG_LINE.match(line)) and shown(match["logger"], match["message"]):
            say(start, match["message"].replace("[DAG TEST] ", "airflow: "))
    process.wait()
    if not summary:
        sys.stderr.write("".join(tail))
        raise SystemExit(f"dag.test() ended with exit code {process.returncode} and no result")
    return summary


async def fetch_job(base_url: str, token: str | None, job_id: str) -> tuple[dict[str, Any], Any]:
    config = ServiceConfig.from_connection_fields(conn_id="demo", host=base_url, password=token)
    async with JobServiceClient(config) as client:
        job = await client.get_job(job_id)
        return job.summary(), await client.get_result(job_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (service DB, Airflow home)")
    args = parser.parse_args()
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="jobservice-demo-"))
    try:
        with LocalServiceProcess(workdir / "service") as service:
            say(start, f"local job service listening on {service.base_url} (token required; data in {workdir})")
            env = dict(os.environ)
            env.update(
                AIRFLOW_HOME=str(workdir / "airflow"),
                AIRFLOW__CORE__LOAD_EXAMPLES="False",
                AIRFLOW__CORE__DAGS_FOLDER=str(DAG_FILE.parent),
                AIRFLOW_CONN_JOBSERVICE_DEFAULT=json.dumps(
                    {"conn_type": "jobservice", "host": service.base_url, "password": service.token}
                ),
            )
            say(start, "migrating a throwaway Airflow metadata DB (SQLite)")
            subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
            say(start, f"running {DAG_FILE.name} with dag.test()")
            summary = run_dag(env, start)
            job_id = summary.get("xcom", {}).get("train_model", {}).get("job_id")
            say(start, f"DAG run {summary.get('run_id')}: {summary.get('state')} {summary.get('tasks')}")
            if not job_id:
                print(json.dumps(summary, indent=2))
                return 1
            job, result = asyncio.run(fetch_job(service.base_url, service.token, job_id))
            print("\nThe job, as the service records it:")
            print(json.dumps(job, indent=2))
            print("\nIts result (the task's return_value XCom):")
            print(json.dumps(result, indent=2))
            ok = summary.get("state") == "success" and job["status"] == "SUCCEEDED"
            say(start, "demo finished: " + ("SUCCEEDED" if ok else "something went wrong"))
            return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
