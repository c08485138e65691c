"""The "Job Service job" extra link in a real deployment (issue 13, item 6): what the api-server
serves for each task instance, while deferred and after the job ended."""

from __future__ import annotations

import re
from typing import Any

from tests.deployment.airflow_deployment import AirflowDeployment

DAG_ID = "deployment_job_links"
LINK = "Job Service job"


def links(deployment: AirflowDeployment, run_id: str, task_id: str) -> dict[str, Any]:
    """``GET .../taskInstances/{task_id}/links``: the extra links the UI shows, name -> URL."""
    answer = deployment.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/links")
    return dict(answer["extra_links"])


def job_of_link(deployment: AirflowDeployment, url: str) -> dict[str, Any]:
    """The job a link of the local service leads to (``<base URL>/ui/jobs/<id>``)."""
    found = re.fullmatch(re.escape(deployment.service.base_url) + r"/ui/jobs/(j_[0-9a-f]{32})", url)
    assert found, url
    return deployment.service_job(found.group(1))


def test_each_task_instance_links_to_its_job_while_deferred_and_after(deployment: AirflowDeployment) -> None:
    run_id = deployment.trigger_dag(DAG_ID)
    for task_id in ("run", "watch"):
        deployment.wait_for_task_state(DAG_ID, run_id, task_id, {"deferred"}, timeout=120)

    # While deferred: the operator's link (it pushes no XCom of its own) leads to its running job.
    while_deferred = links(deployment, run_id, "run")
    assert set(while_deferred) == {LINK}, while_deferred
    job = job_of_link(deployment, while_deferred[LINK])
    assert job["status"] in ("QUEUED", "RUNNING") and job["params"]["result"] == {"linked": True}, job
    # The sensor's leads to the job it watches: the one "start" submitted.
    watched = deployment.xcom(DAG_ID, run_id, "start", key="job_id")
    sensor_url = f"{deployment.service.base_url}/ui/jobs/{watched}"
    assert links(deployment, run_id, "watch") == {LINK: sensor_url}
    assert deployment.xcom(DAG_ID, run_id, "watch", key="job_url") == sensor_url

    assert deployment.wait_for_run_state(DAG_ID, run_id, {"success"}, timeout=120) == "success"
    # After execute_complete (a new process): the same links, the job now SUCCEEDED.
    assert links(deployment, run_id, "run") == while_deferred
    assert job_of_link(deployment, while_deferred[LINK])["status"] == "SUCCEEDED"
    assert links(deployment, run_id, "watch") == {LINK: sensor_url}
    # "start" has the link too (an operator that does not wait).
    assert links(deployment, run_id, "start") == {LINK: sensor_url}
