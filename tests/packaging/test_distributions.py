"""The release as users get it: the built wheel and sdist, and the wheel alone in a clean environment.

Builds both distributions with ``uv build`` (the wheel from the sdist, so the sdist is proven
complete enough to build), checks what each holds and their metadata (and ``twine check
--strict``, from a throwaway tool environment), then installs the provider's wheel with
Airflow, and jobservice-local's wheel for the example DAG's service, into a new virtual
environment: no repository on its path, no test dependencies. There Airflow's own CLI must list
the provider, its hook and its trigger, and an example DAG must run with ``dag.test()``.

The clean environment gets the Airflow version of the environment running the tests, with every
package pinned to what this environment has (its ``uv pip freeze`` as constraints): the versions
the other tiers tested, and no resolution surprises from an index that moved on. Airflow's
published constraints files play that role for users (README, Install).
"""

from __future__ import annotations

import configparser
import email.parser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import jobservice_provider

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLE_DAG = REPO / "dags_examples" / "example_submit_and_wait.py"
VERSION = jobservice_provider.__version__
TIMINGS: dict[str, float] = {}

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        importlib.util.find_spec("uv") is None,
        reason="uv is not installed in this environment (./dev installs it in .venv; or: pip install uv)",
    ),
]


@pytest.fixture(scope="module", autouse=True)
def report_timings(request: pytest.FixtureRequest) -> Iterator[None]:
    """What each step of this tier took, written to the terminal at its end (CI's log keeps it)."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture and TIMINGS:
        with capture.global_and_fixture_disabled():  # a fixture's output is captured otherwise
            reporter.ensure_newline()
            reporter.write_line("packaging tier: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in TIMINGS.items()))


def run(args: list[str | Path], *, timeout: float = 600, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def uv(*args: str | Path, **kwargs: Any) -> str:
    return run([sys.executable, "-m", "uv", *args], **kwargs)


def timed(name: str, start: float) -> None:
    TIMINGS[name] = time.monotonic() - start


def metadata(text: str) -> Message:
    return email.parser.Parser().parsestr(text)


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path
    local_wheel: Path
    local_sdist: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    start = time.monotonic()
    uv("build", "--quiet", "--out-dir", out, REPO)
    uv("build", "--quiet", "--out-dir", out, REPO / "local")
    timed("build both distributions", start)
    (wheel,) = out.glob("airflow_provider_jobservice-*.whl")
    (sdist,) = out.glob("airflow_provider_jobservice-*.tar.gz")
    (local_wheel,) = out.glob("jobservice_local-*.whl")
    (local_sdist,) = out.glob("jobservice_local-*.tar.gz")
    return Dist(wheel, sdist, local_wheel, local_sdist)


def wheel_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        return wheel.namelist()


def wheel_text(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as wheel:
        return wheel.read(name).decode()


def sdist_files(path: Path) -> dict[str, bytes]:
    """The sdist's regular files by path below its top directory."""
    with tarfile.open(path) as sdist:
        files = {}
        for member in sdist.getmembers():
            if member.isfile():
                handle = sdist.extractfile(member)
                assert handle is not None
                files[member.name.split("/", 1)[1]] = handle.read()
        return files


def test_wheel_holds_the_provider_alone(dist: Dist) -> None:
    assert dist.wheel.name == f"airflow_provider_jobservice-{VERSION}-py3-none-any.whl"
    info = f"airflow_provider_jobservice-{VERSION}.dist-info/"
    names = wheel_names(dist.wheel)
    strays = [n for n in names if not n.startswith(("jobservice_provider/", info))]
    assert strays == [], "only the provider belongs in its wheel (no tests, examples or jobservice_local)"
    # Every file of the package, its data (py.typed, the presets' JSON) included.
    package = REPO / "provider" / "jobservice_provider"
    files = {p.relative_to(package.parent).as_posix() for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "jobservice_provider/py.typed" in files and any(n.endswith(".json") for n in files)
    assert files <= set(names), sorted(files - set(names))
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert wheel_text(dist.wheel, info + "licenses/LICENSE") == (REPO / "LICENSE").read_text()
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel_text(dist.wheel, info + "entry_points.txt"))
    assert dict(entry_points["apache_airflow_provider"]) == {"provider_info": "jobservice_provider:get_provider_info"}


def test_wheel_metadata(dist: Dist) -> None:
    meta = metadata(wheel_text(dist.wheel, f"airflow_provider_jobservice-{VERSION}.dist-info/METADATA"))
    assert (meta["Name"], meta["Version"]) == ("airflow-provider-jobservice", VERSION)
    assert (meta["License-Expression"], meta["License-File"]) == ("Apache-2.0", "LICENSE")
    classifiers = set(meta.get_all("Classifier") or [])
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (11, 12, 13)} <= classifiers
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL") or [])
    assert {"Source", "Issues", "Changelog", "Documentation"} <= set(urls)
    requires = meta.get_all("Requires-Dist") or []
    runtime = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requires if "extra ==" not in r}
    # What pyproject.toml declares (tests/unit/test_release_metadata.py keeps that list to the allowed ones).
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert runtime == {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in declared}
    assert set(meta.get_all("Provides-Extra") or []) == {"test", "browser", "bench"}
    assert not [r for r in requires if r.startswith("playwright") and "extra == 'browser'" not in r]
    # The README is the index page: rendered as Markdown, every link absolute.
    assert meta["Description-Content-Type"] == "text/markdown"
    body = meta.get_payload()
    assert isinstance(body, str) and body.startswith("# airflow-provider-jobservice")
    assert [link for link in re.findall(r"\]\(([^)\s]+)\)", body) if not link.startswith("https://")] == []


def test_sdist_holds_the_tests_license_and_what_they_need(dist: Dist) -> None:
    assert dist.sdist.name == f"airflow_provider_jobservice-{VERSION}.tar.gz"
    files = sdist_files(dist.sdist)
    for name in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        "PKG-INFO",
        "local/pyproject.toml",
        "local/LICENSE",
        "dev",
    ):
        assert name in files, name
    assert files["LICENSE"] == (REPO / "LICENSE").read_bytes()
    tests = {p.relative_to(REPO).as_posix() for p in (REPO / "tests").rglob("*.py") if "__pycache__" not in p.parts}
    assert tests and tests <= set(files), sorted(tests - set(files))
    needed = [REPO / "dags_examples", REPO / "local" / "jobservice_local", REPO / "provider", REPO / "docs", REPO / "bench"]
    for folder in needed:
        sources = {p.relative_to(REPO).as_posix() for p in folder.rglob("*") if p.suffix in (".py", ".md", ".yaml")}
        assert sources <= set(files), sorted(sources - set(files))
    junk = [
        n for n in files if re.search(r"(^|/)(\.venv|\.ray-venv|__pycache__|\.pytest_cache|bench/results/logs)(/|$)|\.pyc$", n)
    ]
    assert junk == []
    assert metadata(files["PKG-INFO"].decode())["Version"] == VERSION


def test_local_distributions_hold_the_service_and_its_license(dist: Dist) -> None:
    local_version = version("jobservice-local")
    info = f"jobservice_local-{local_version}.dist-info/"
    names = wheel_names(dist.local_wheel)
    assert [n for n in names if not n.startswith(("jobservice_local/", info))] == []
    assert wheel_text(dist.local_wheel, info + "licenses/LICENSE") == (REPO / "LICENSE").read_text()
    assert "jobservice-local = jobservice_local.cli:main" in wheel_text(dist.local_wheel, info + "entry_points.txt")
    meta = metadata(wheel_text(dist.local_wheel, info + "METADATA"))
    assert (meta["Name"], meta["License-Expression"]) == ("jobservice-local", "Apache-2.0")
    assert {"Source", "Issues", "Changelog"} <= {url.split(", ", 1)[0] for url in meta.get_all("Project-URL") or []}
    assert "LICENSE" in sdist_files(dist.local_sdist)


def test_twine_accepts_every_distribution(dist: Dist) -> None:
    start = time.monotonic()
    out = uv(
        "tool",
        "run",
        "--quiet",
        "--from",
        "twine>=6.1",
        "twine",
        "check",
        "--strict",
        dist.wheel,
        dist.sdist,
        dist.local_wheel,
        dist.local_sdist,
    )
    timed("twine check", start)
    assert out.count("PASSED") == 4, out


@dataclass(frozen=True)
class CleanEnv:
    root: Path
    python: Path
    env: dict[str, str]

    def airflow(self, *args: str) -> Any:
        out = run([self.python.parent / "airflow", *args, "--output", "json"], env=self.env, cwd=self.root, timeout=300)
        return json.loads(out[out.index("[") :])


@pytest.fixture(scope="module")
def clean_env(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleanEnv]:
    root = tmp_path_factory.mktemp("clean-env")
    venv, home, dags = root / "venv", root / "airflow-home", root / "dags"
    home.mkdir()
    dags.mkdir()
    start = time.monotonic()
    uv("venv", "--quiet", "--python", sys.executable, venv)
    (root / "constraints.txt").write_text(uv("pip", "freeze", "--exclude-editable", "-p", sys.executable))
    airflow = f"apache-airflow=={version('apache-airflow')}"
    uv(
        "pip",
        "install",
        "--quiet",
        "-p",
        venv / "bin" / "python",
        "--constraint",
        root / "constraints.txt",
        airflow,
        dist.wheel,
        dist.local_wheel,
    )
    timed("clean environment with the wheel", start)
    # Nothing of this checkout or of the test environment's settings: Airflow's own environment only.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "JOBSERVICE"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    shutil.copy(EXAMPLE_DAG, dags / EXAMPLE_DAG.name)
    yield CleanEnv(root, venv / "bin" / "python", env)


def test_clean_environment_has_the_wheel_and_nothing_of_the_checkout(clean_env: CleanEnv) -> None:
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, jobservice_provider, jobservice_local;"
        "print(json.dumps({'provider': jobservice_provider.__file__, 'local': jobservice_local.__file__,"
        "'airflow': m.version('apache-airflow'), 'absent': [n for n in ('pytest', 'playwright', 'matplotlib', 'tests')"
        " if u.find_spec(n) is None]}))"
    )
    found = json.loads(run([clean_env.python, "-I", "-c", probe], env=clean_env.env, cwd=clean_env.root))
    site = clean_env.root / "venv"
    assert Path(found["provider"]).is_relative_to(site) and Path(found["local"]).is_relative_to(site), found
    assert found["airflow"] == version("apache-airflow")
    assert found["absent"] == ["pytest", "playwright", "matplotlib", "tests"]


def test_airflow_lists_the_provider_its_hook_and_its_trigger(clean_env: CleanEnv) -> None:
    start = time.monotonic()
    providers = {p["package_name"]: p for p in clean_env.airflow("providers", "list")}
    assert providers["airflow-provider-jobservice"]["version"] == VERSION
    hooks = [h for h in clean_env.airflow("providers", "hooks") if h["package_name"] == "airflow-provider-jobservice"]
    assert [(h["connection_type"], h["class"], h["conn_id_attribute_name"]) for h in hooks] == [
        ("jobservice", "jobservice_provider.hooks.jobservice.JobServiceHook", "jobservice_conn_id")
    ]
    triggers = [t for t in clean_env.airflow("providers", "triggers") if t["package_name"] == "airflow-provider-jobservice"]
    assert [t["class"] for t in triggers] == ["jobservice_provider.triggers.jobservice"]
    timed("airflow providers list/hooks/triggers", start)


def test_an_example_dag_runs_from_the_wheel(clean_env: CleanEnv) -> None:
    start = time.monotonic()
    run([clean_env.python.parent / "airflow", "db", "migrate"], env=clean_env.env, cwd=clean_env.root)
    dag_file = Path(clean_env.env["AIRFLOW__CORE__DAGS_FOLDER"]) / EXAMPLE_DAG.name
    workdir = clean_env.root / "service"
    workdir.mkdir()
    done = subprocess.run(
        [clean_env.python, "-I", HERE / "clean_env_dag.py", dag_file, "example_submit_and_wait", workdir],
        capture_output=True,
        text=True,
        env=clean_env.env,
        cwd=clean_env.root,
        timeout=300,
    )
    timed("airflow db migrate + dag.test()", start)
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAGTEST-RESULT ")]
    assert done.returncode == 0 and lines, output[-4000:]
    summary = json.loads(lines[-1].removeprefix("DAGTEST-RESULT "))
    site = clean_env.root / "venv"
    assert Path(summary["provider_file"]).is_relative_to(site) and Path(summary["local_file"]).is_relative_to(site)
    assert summary["import_errors"] == {}
    assert (summary["state"], summary["tasks"]) == ("success", {"train_model": "success", "report": "success"}), output[-4000:]
    assert "running trigger in line" in output  # deferred: the trigger from the wheel ran
    assert summary["xcom"]["train_model"]["return_value"] == {"model": "churn-v2", "auc": 0.91}
    assert summary["xcom"]["report"]["return_value"] == "model churn-v2 scored AUC 0.91"
