"""Installing the provider's wheel where Airflow is installed leaves that Airflow as it is.

A floor above the installed Airflow makes pip upgrade Airflow (and with it the database schema
on the next ``airflow db migrate``) as a side effect of installing a provider. This runs on the
Airflow line the tests run on (``JOBSERVICE_AIRFLOW``, docs/compatibility.md), so CI checks each
supported line: the wheel built from this checkout, installed with pip the way users install a
provider, into a fresh environment holding the same Airflow release as the test environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from tests.conftest import REPO

# Building, two installs and an import: about a minute on the 2-core dev machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

AIRFLOW_DISTRIBUTIONS = ("apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk")
_VERSIONS = f"import json, importlib.metadata as m; print(json.dumps({{d: m.version(d) for d in {AIRFLOW_DISTRIBUTIONS!r}}}))"


def run(*args: str | Path, timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def airflow_versions(python: Path) -> dict[str, str]:
    return dict(json.loads(run(python, "-c", _VERSIONS)))


def test_installing_the_wheel_keeps_the_installed_airflow(tmp_path: Path) -> None:
    ours = {name: version(name) for name in AIRFLOW_DISTRIBUTIONS}
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "uv", "build", "--wheel", "--quiet", "--out-dir", dist, REPO)
    (wheel,) = dist.glob("airflow_provider_jobservice-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    # Airflow as a user already runs it: this test environment's releases (uv, for speed).
    run(sys.executable, "-m", "uv", "pip", "install", "--quiet", "-p", python, *(f"{n}=={v}" for n, v in ours.items()))
    before = airflow_versions(python)
    assert before == ours

    # The wheel as users install a provider: pip, no constraints, nothing pinned.
    installed = run(python, "-m", "pip", "install", "--disable-pip-version-check", wheel)
    after = airflow_versions(python)
    assert after == before, f"installing {wheel.name} changed Airflow from {before} to {after}:\n{installed[-3000:]}"
    # And the provider it installed is the one that works there: the task modules import.
    imported = run(
        python,
        "-c",
        "import jobservice_provider.operators.jobservice, jobservice_provider.sensors.jobservice, airflow; "
        "print(airflow.__version__)",
    )
    assert imported.strip() == before["apache-airflow"]
