"""What dag.test() cannot show: the api-server's connection form metadata and the real triggerer process."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from tests.deployment.airflow_deployment import AirflowDeployment, poll

from jobservice_provider import get_provider_info
from jobservice_provider.core.status import TERMINAL, JobStatus

TRIGGER_CLASSPATH = "jobservice_provider.triggers.jobservice.JobStatusTrigger"
TRIGGER_LOGGER = TRIGGER_CLASSPATH
TWENTY = "deployment_twenty_deferred"


def test_hook_meta_serves_the_jobservice_form(deployment: AirflowDeployment) -> None:
    declared = get_provider_info()["connection-types"][0]
    meta = deployment.request("GET", "/ui/connections/hook_meta")
    (jobservice,) = [m for m in meta if m["connection_type"] == "jobservice"]

    assert jobservice["hook_name"] == "Job Service"
    assert jobservice["hook_class_name"] == declared["hook-class-name"]
    standard = jobservice["standard_fields"]
    assert standard["host"]["title"] == "Base URL" and not standard["host"]["hidden"]
    assert standard["password"]["title"] == "API token" and not standard["password"]["hidden"]
    assert standard["login"]["title"] == "Login (basic auth)" and not standard["login"]["hidden"]  # auth_type basic
    for hidden in ("url_schema", "port"):
        assert standard[hidden]["hidden"], hidden

    extra = jobservice["extra_fields"]
    assert set(extra) == set(declared["conn-fields"])
    for name, spec in declared["conn-fields"].items():
        served = extra[name]
        assert served["schema"]["title"] == spec["label"], name
        assert served["description"] == spec["description"], name
        for key, value in spec["schema"].items():
            assert served["schema"][key] == value, (name, key)
    assert extra["verify_tls"]["value"] is True  # shown switched on, as the hook defaults it


def test_example_dag_defers_and_the_trigger_logs_into_the_task_log(deployment: AirflowDeployment) -> None:
    dag_id, task_id = "example_submit_and_wait", "train_model"
    run_id = deployment.trigger_dag(dag_id)

    deferred = deployment.wait_for_task_state(dag_id, run_id, task_id, {"deferred"}, timeout=120)
    assert deferred["trigger"]["classpath"] == TRIGGER_CLASSPATH
    assert deployment.wait_for_run_state(dag_id, run_id, {"success"}, timeout=120) == "success"

    job_id = deployment.xcom(dag_id, run_id, task_id, key="job_id")
    assert re.fullmatch(r"j_[0-9a-f]+", job_id), job_id
    assert deployment.xcom(dag_id, run_id, task_id) == {"model": "churn-v2", "auc": 0.91}
    assert deployment.xcom(dag_id, run_id, "report") == "model churn-v2 scored AUC 0.91"

    entries = deployment.task_log_entries(dag_id, run_id, task_id)
    log_text = deployment.task_log(dag_id, run_id, task_id)
    trigger_lines = [e["event"] for e in entries if e.get("logger") == TRIGGER_LOGGER]
    running = [line for line in trigger_lines if re.search(rf"\bJob {job_id}\b.*\bRUNNING\b", line)]
    assert running, f"no 'Job {job_id} … RUNNING' line from the trigger in the task log:\n{log_text}"
    # The api-server merged the file the triggerer process wrote for this task into the log.
    sources = [e["event"] for e in entries if re.search(r"attempt=1\.log\.trigger\.\d+\.log$", e["event"])]
    assert sources, f"the task log names no triggerer log file:\n{log_text}"
    assert running[0] in (deployment.home / "logs" / sources[0].split("/logs/", 1)[1]).read_text()
    triggerer_ids = {job["id"] for job in deployment.airflow_jobs("TriggererJob")}
    assert int(sources[0].rsplit(".trigger.", 1)[1].removesuffix(".log")) in triggerer_ids


def _all_deferred_in(triggerer_id: int) -> Any:
    def want(tis: list[dict[str, Any]]) -> bool:
        return len(tis) == 20 and all(
            ti["state"] == "deferred" and (ti.get("trigger") or {}).get("triggerer_id") == triggerer_id for ti in tis
        )

    return want


@pytest.mark.timeout(480)
def test_twenty_deferred_waits_survive_a_triggerer_sigkill(deployment: AirflowDeployment) -> None:
    (old_triggerer, *_) = [job for job in deployment.airflow_jobs("TriggererJob") if job["state"] == "running"]
    run_id = deployment.trigger_dag(TWENTY)

    deployment.wait_for_states(
        TWENTY, run_id, _all_deferred_in(old_triggerer["id"]), "all 20 tasks deferred to the running triggerer", timeout=180
    )
    jobs_at_kill = [j for j in deployment.service_jobs(type="sleep") if j["meta"].get("run_id") == run_id]
    assert len(jobs_at_kill) == 20
    assert all(JobStatus(j["status"]) not in TERMINAL for j in jobs_at_kill), Counter(j["status"] for j in jobs_at_kill)

    deployment.kill_component("triggerer")
    assert not deployment.components["triggerer"].running()
    deployment.start_component("triggerer")

    def new_triggerer() -> dict[str, Any] | None:
        newer = [job for job in deployment.airflow_jobs("TriggererJob") if job["id"] > old_triggerer["id"]]
        return newer[0] if newer else None

    new_id = poll("a new triggerer job", new_triggerer, timeout=90, on_timeout=deployment.diagnostics)["id"]
    assert deployment.wait_for_run_state(TWENTY, run_id, {"success"}, timeout=240) == "success"

    tis = deployment.task_instances(TWENTY, run_id)
    assert sorted(ti["map_index"] for ti in tis) == list(range(20))
    assert {(ti["state"], ti["try_number"]) for ti in tis} == {("success", 1)}  # no task needed a retry
    for map_index in range(20):
        assert deployment.xcom(TWENTY, run_id, "wait", map_index=map_index) == {"n": map_index}
        # Every wait was finished by the new triggerer, which wrote its own part of the task log.
        log = deployment.task_log_entries(TWENTY, run_id, "wait", map_index=map_index)
        assert any(e["event"].endswith(f"attempt=1.log.trigger.{new_id}.log") for e in log), map_index

    jobs = [j for j in deployment.service_jobs(type="sleep") if j["meta"].get("run_id") == run_id]
    assert len(jobs) == 20, f"expected exactly 20 jobs for run {run_id}, found {len(jobs)}"
    assert sorted(int(j["meta"]["map_index"]) for j in jobs) == list(range(20))  # one job per task, none twice
    assert {j["id"] for j in jobs} == {j["id"] for j in jobs_at_kill}  # the same jobs were waited on, none resubmitted
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}
