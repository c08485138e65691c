"""The operator extra link "Job Service job": the job's page in the service's web UI."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink


class JobServiceJobLink(BaseOperatorLink):
    """Links a task instance to the page of its job in the service's web UI.

    Airflow asks for the link on the worker when a try's part ends (deferred included) and keeps
    what it gets in an XCom of its own (``_link_JobServiceJobLink``), which the UI reads: so the
    link works while the task is deferred and with ``do_xcom_push=False``. The URL is one the
    service or the connection's dialect supplied (never built from user input unescaped); when
    there is none, there is no link.
    """

    name = "Job Service job"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = getattr(operator, "job_url", None)
        return url if isinstance(url, str) else ""
