"""The Airflow idioms users look for, in real Airflow (``dag.test()``) against the local service (issue 13, item 6)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import conn_json
from tests.support.dag_test import run_dag_file

from jobservice_provider.hooks.jobservice import JobServiceHook

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]
DAGS = Path(__file__).parent / "dags"
# A connection nothing listens on: a task that used it instead of the templated one fails.
NOWHERE = "http://127.0.0.1:9"
# Where Airflow keeps what the extra link showed for a task instance.
LINK_XCOM = "_link_JobServiceJobLink"


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, **connections: str) -> tuple[dict[str, Any], str]:
    """``dag.test()`` of ``dag_id`` (tests/e2e/dags/idioms_dags.py) in its own process, with the
    given ``AIRFLOW_CONN_<NAME>`` connections; its summary and everything it printed."""
    environ = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    environ.update({f"AIRFLOW_CONN_{name.upper()}": value for name, value in connections.items()})
    return run_dag_file(DAGS / "idioms_dags.py", dag_id, json.dumps(conf or {}), env=environ)


def user_xcoms(task: dict[str, Any]) -> dict[str, Any]:
    """A task's XComs without Airflow's own extra-link entries (``_link_<class>``)."""
    return {key: value for key, value in task["xcom"].items() if not key.startswith("_link_")}


def job_page(base_url: str, job_id: str) -> str:
    """The local service's page of a job: its record's ``links.web`` under the base URL."""
    return f"{base_url}/ui/jobs/{job_id}"


def test_do_xcom_push_false_pushes_nothing_and_the_extra_link_still_works(local_service: Any, monkeypatch: Any) -> None:
    base_url = local_service.base_url
    summary, output = run_dag("idioms_no_xcom_push", jobservice_default=conn_json(base_url, local_service.token))
    tasks = summary["tasks"]
    assert summary["state"] == "success", (summary, output[-3000:])
    assert all(task["state"] == "success" for task in tasks.values()), tasks
    # The submitter without do_xcom_push=False pushes its job id, returns it, and its page's URL.
    submitted = user_xcoms(tasks["submit"])
    job_id = submitted["job_id"]
    assert submitted == {"job_id": job_id, "return_value": job_id, "job_url": job_page(base_url, job_id)}, submitted
    assert tasks["submit"]["xcom"][LINK_XCOM] == job_page(base_url, job_id)
    # do_xcom_push=False: nothing of ours; the link (Airflow's own XCom) still leads to each job.
    assert user_xcoms(tasks["watch_quietly"]) == {}, tasks["watch_quietly"]["xcom"]
    assert tasks["watch_quietly"]["xcom"][LINK_XCOM] == job_page(base_url, job_id)
    monkeypatch.setenv("AIRFLOW_CONN_JOBSERVICE_DEFAULT", conn_json(base_url, local_service.token))
    hook = JobServiceHook()
    for quiet, result in (("deferred_quietly", {"n": 2}), ("on_worker_quietly", {"n": 3})):
        assert user_xcoms(tasks[quiet]) == {}, (quiet, tasks[quiet]["xcom"])
        link = tasks[quiet]["xcom"][LINK_XCOM]
        found = re.fullmatch(re.escape(f"{base_url}/ui/jobs/") + "(j_[0-9a-f]{32})", link)
        assert found, (quiet, link)
        assert hook.get_result(found.group(1)) == result, quiet


def test_jobservice_conn_id_is_templated(local_service: Any) -> None:
    summary, output = run_dag(
        "idioms_templated_conn",
        {"conn": "jobservice_templated"},
        jobservice_default=conn_json(NOWHERE, "unused"),
        jobservice_templated=conn_json(local_service.base_url, local_service.token),
    )
    tasks = summary["tasks"]
    assert summary["state"] == "success", (summary, output[-3000:])
    assert tasks["run"]["xcom"]["return_value"] == {"via": "templated"}, tasks["run"]
    assert tasks["watch"]["xcom"]["return_value"]["status"] == "SUCCEEDED", tasks["watch"]
    assert "127.0.0.1:9" not in output
    job_id = tasks["run"]["xcom"]["job_id"]
    for task in ("run", "watch"):  # the link is built from the templated connection's service
        assert tasks[task]["xcom"]["job_url"] == tasks[task]["xcom"][LINK_XCOM] == job_page(local_service.base_url, job_id)
