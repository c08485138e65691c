"""docs/dialects.md "Loading a spec into a connection", run as written: the connection file with a
declarative spec pasted in as plain JSON, loaded with the documented ``airflow connections add``
command, or read by the documented secrets backend; the spec arrives intact (nothing escaped by
hand) and the connection works against a real HTTP server (the in-house service of the
declarative tests).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REPO
from tests.integration.test_declarative_dialect import TOKEN, InHouseService, doc_spec
from tests.support.dag_test import run_dag_file

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]
DOC = (REPO / "docs" / "dialects.md").read_text()


def block(marker: str, language: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)\n```", DOC, re.S)
    assert match, f"docs/dialects.md has no {marker} block"
    return match.group(1)


@pytest.fixture(scope="module")
def inhouse() -> Iterator[InHouseService]:
    with InHouseService() as service:
        yield service


def connection_file(inhouse: InHouseService, name: str) -> dict[str, Any]:
    """The documented connection file, pointed at the test service, with the documented spec pasted in."""
    connection: dict[str, Any] = json.loads(block("conn-file:inhouse", "json"))
    spec = doc_spec("inhouse")
    spec["name"] = name
    connection["host"], connection["password"] = inhouse.base_url, TOKEN
    connection["extra"]["dialect_options"] = spec
    return connection


def stored_extra(conn_id: str, env: dict[str, str]) -> dict[str, Any]:
    """The connection's extra as the metadata database holds it (``connections get`` shows numbers as
    text), read by a new process (it reads the Fernet key the CLI's airflow.cfg holds)."""
    program = (
        "import json; from airflow.models import Connection; from airflow.utils.session import create_session; "
        "from sqlalchemy import select\n"
        "with create_session() as session:\n"
        f"    print(session.scalar(select(Connection).where(Connection.conn_id == {conn_id!r})).extra)"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    extra: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return extra


def read_connection(conn_id: str, env: dict[str, str]) -> tuple[dict[str, Any], list[Any]]:
    """The spec as a new process reads it from Airflow, and its connection test (a real request)."""
    program = (
        "import json; from jobservice_provider.hooks.jobservice import JobServiceHook; "
        f"hook = JobServiceHook({conn_id!r}); "
        "print(json.dumps([json.loads(hook.config.dialect_options), hook.test_connection()]))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    spec, tested = json.loads(done.stdout.strip().splitlines()[-1])
    return spec, tested


def test_the_documented_connections_add_command_loads_the_spec_unescaped(inhouse: InHouseService, tmp_path: Path) -> None:
    connection = connection_file(inhouse, "in-house runs API (added)")
    (tmp_path / "inhouse-conn.json").write_text(json.dumps(connection, indent=2))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("AIRFLOW_CONN_INHOUSE", None)
    subprocess.run(["airflow", "connections", "delete", "inhouse"], capture_output=True, env=env, timeout=120)
    commands = block("commands:load-spec", "bash")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert stored_extra("inhouse", env)["dialect_options"] == connection["extra"]["dialect_options"]  # every quote intact
    # A DAG's task reads it as every task does (through Airflow's execution API) and runs a job through it.
    (tmp_path / "dag.py").write_text(DAG)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(tmp_path)
    summary, output = run_dag_file(tmp_path / "dag.py", "load_spec", env=env)
    assert summary["state"] == "success", (summary, output[-3000:])
    assert summary["tasks"]["export"]["xcom"]["return_value"] == {"rows": 2}


DAG = """
from datetime import datetime

from airflow.sdk import DAG

from jobservice_provider.operators.jobservice import SubmitAndWaitOperator

with DAG(dag_id="load_spec", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    SubmitAndWaitOperator(
        task_id="export", jobservice_conn_id="inhouse", job_type="export", job_params={"steps": 2}, poll_interval=0.5
    )
"""


def test_the_documented_secrets_backend_reads_the_spec_from_its_file(inhouse: InHouseService, tmp_path: Path) -> None:
    connection = connection_file(inhouse, "in-house runs API (secrets file)")
    path = tmp_path / "connections.json"
    path.write_text(json.dumps({"inhouse": connection}, indent=2))
    config = configparser.ConfigParser()
    config.read_string(block("config:secrets-backend", "ini"))
    kwargs = json.loads(config["secrets"]["backend_kwargs"])
    kwargs["connections_file_path"] = str(path)
    env = {
        **os.environ,
        "AIRFLOW__SECRETS__BACKEND": config["secrets"]["backend"],
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(kwargs),
    }
    env.pop("AIRFLOW_CONN_INHOUSE", None)
    spec, (ok, message) = read_connection("inhouse", env)
    assert spec == connection["extra"]["dialect_options"]
    assert ok and message.startswith("Connected to in-house runs API (secrets file) 7.1"), message
