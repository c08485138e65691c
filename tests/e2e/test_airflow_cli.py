"""Airflow's own CLI discovers the provider, its connection type and its trigger module."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def airflow(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_providers_list_hooks_and_triggers_show_the_provider() -> None:
    listed = airflow("providers", "list", "--output", "plain")
    assert "airflow-provider-jobservice" in listed
    hooks = airflow("providers", "hooks", "--output", "plain")
    (line,) = [row for row in hooks.splitlines() if row.split() and row.split()[0] == "jobservice"]
    assert "jobservice_provider.hooks.jobservice.JobServiceHook" in line and "jobservice_conn_id" in line
    triggers = airflow("providers", "triggers", "--output", "plain")
    assert "jobservice_provider.triggers.jobservice" in triggers
