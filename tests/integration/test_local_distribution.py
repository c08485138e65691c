"""jobservice-local is its own distribution: the provider's wheel does not carry it, and it serves alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import REPO

pytestmark = pytest.mark.integration

LISTENING = re.compile(r"listening on (http://\S+)")


def uv(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run uv from the test environment, from its cache when it can (a fresh clone's ./dev filled it)."""
    command = [sys.executable, "-m", "uv", *map(str, args)]
    done = subprocess.run([*command, "--offline"], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    uv("build", "--wheel", "-o", out, REPO)
    uv("build", "--wheel", "-o", out, REPO / "local")
    (provider,) = out.glob("airflow_provider_jobservice-*.whl")
    (local,) = out.glob("jobservice_local-*.whl")
    return {"provider": provider, "local": local}


def test_the_providers_wheel_has_no_local_service_and_no_console_script(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["provider"]) as wheel:
        names = wheel.namelist()
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        declared = wheel.read(entry_points).decode()
    assert [name for name in names if "/local/" in name or name.startswith("jobservice_local")] == []
    assert any(name.startswith("jobservice_provider/core/") for name in names)
    assert "console_scripts" not in declared and "jobservice-local" not in declared, declared


def test_the_local_wheel_depends_on_aiohttp_only_and_declares_the_console_script(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["local"]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = wheel.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [re.split(r"[<>=!~ ;\[]", r)[0] for r in requires] == ["aiohttp"], requires
    assert "jobservice-local = jobservice_local.cli:main" in entry_points
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"jobservice_local"}


@pytest.fixture(scope="module")
def alone(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding jobservice-local (and what it declares) and nothing else."""
    venv = tmp_path_factory.mktemp("alone") / "venv"
    uv("venv", "-q", "-p", sys.executable, venv)
    uv("pip", "install", "-q", "-p", venv / "bin" / "python", wheels["local"])
    return venv


@pytest.fixture
def served_alone(alone: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    token = "alone-token-1234"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["JOBSERVICE_TOKEN"] = token
    process = subprocess.Popen(
        [alone / "bin" / "jobservice-local", "serve", "--port", "0", "--db", tmp_path / "jobs.db"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = LISTENING.search(line)
        assert match, line + (process.stderr.read() if process.poll() is not None and process.stderr else "")
        yield match.group(1), token
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_installed_alone_it_serves_the_api(alone: Path, served_alone: tuple[str, str]) -> None:
    base_url, token = served_alone
    request = urllib.request.Request(base_url + "/v1/health", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["service"] == "jobservice-local" and health["api"] == "v1"
    assert health["version"] == "0.1.0"
    body = json.dumps({"type": "sleep", "params": {"seconds": 0}}).encode()
    submit = urllib.request.Request(
        base_url + "/v1/jobs",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(submit, timeout=10) as response:
        assert response.status == 201 and json.loads(response.read())["type"] == "sleep"
    probe = "import importlib.util as u; print([m for m in ('jobservice_provider', 'airflow') if u.find_spec(m)])"
    done = subprocess.run([alone / "bin" / "python", "-c", probe], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.stdout.strip() == "[]", done
