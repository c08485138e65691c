"""What a release carries besides code: its metadata, license, changelog, and a README that works on a package index.

The built artifacts themselves are checked by the packaging tier (tests/packaging); here the sources.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import jobservice_provider
from jobservice_provider import get_provider_info
from jobservice_provider.core.config import AUTH_TYPES, ServiceConfig
from jobservice_provider.core.dialects.declarative import DeclarativeDialect

REPO = Path(__file__).resolve().parents[2]
HOME = "https://github.com/jobservice/airflow-provider-jobservice"
# The documents a package index renders (README as the long description) or links to.
RENDERED = ("README.md", "local/README.md", "CHANGELOG.md")
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# jsonschema: the declarative spec's schema (Airflow installs it; declared for its lower bound).
RUNTIME_DEPENDENCIES = {"apache-airflow", "aiohttp", "asgiref", "pendulum", "jmespath", "jsonschema"}


def pyproject(path: str = "pyproject.toml") -> dict[str, Any]:
    return tomllib.loads((REPO / path).read_text())


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> set[str]:
    return {github_slug(line.lstrip("#")) for line in path.read_text().splitlines() if re.match(r"#{1,6} ", line)}


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("path", ["pyproject.toml", "local/pyproject.toml"])
def test_the_version_is_written_once_in_the_package(path: str) -> None:
    project = pyproject(path)
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    source = (REPO / path).parent / project["tool"]["hatch"]["version"]["path"]
    assert re.search(r'^__version__ = "\d+\.\d+\.\d+[^"]*"$', source.read_text(), re.M), source


def test_the_provider_reports_the_distributions_version() -> None:
    assert version("airflow-provider-jobservice") == jobservice_provider.__version__ == get_provider_info()["versions"][0]


def test_both_distributions_carry_the_apache_license() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    assert (REPO / "local" / "LICENSE").read_text() == text
    for path in ("pyproject.toml", "local/pyproject.toml"):
        project = pyproject(path)["project"]
        assert (project["license"], project["license-files"]) == ("Apache-2.0", ["LICENSE"]), path
        # PEP 639: the expression replaces the deprecated License classifiers; an index may refuse both.
        assert not [c for c in project["classifiers"] if c.startswith("License ::")], path


def test_the_changelog_has_an_unreleased_section_and_the_current_version() -> None:
    titles = re.findall(r"^## \[([^\]]+)\]", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert titles[0] == "Unreleased"
    assert jobservice_provider.__version__ in titles


@pytest.mark.parametrize("path", ["pyproject.toml", "local/pyproject.toml"])
def test_classifiers_and_project_urls(path: str) -> None:
    project = pyproject(path)["project"]
    classifiers = set(project["classifiers"])
    pythons = sorted(c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert pythons == ["3.11", "3.12", "3.13"]
    assert project["requires-python"] == f">={pythons[0]}"
    assert any(c.startswith("Operating System :: ") for c in classifiers)
    if path == "pyproject.toml":
        assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= classifiers
    urls = project["urls"]
    assert {"Source", "Issues", "Changelog", "Documentation"} <= set(urls)
    assert all(url.startswith(HOME) for url in urls.values()), urls


def test_runtime_dependencies_are_the_allowed_ones() -> None:
    assert {requirement_name(r) for r in pyproject()["project"]["dependencies"]} == RUNTIME_DEPENDENCIES


def test_extras_are_split_by_need() -> None:
    extras = {name: {requirement_name(r) for r in reqs} for name, reqs in pyproject()["project"]["optional-dependencies"].items()}
    assert set(extras) == {"test", "browser", "bench"}
    assert "playwright" in extras["browser"] and "playwright" not in extras["test"]
    bench_only = {"apache-airflow-providers-http", "apache-airflow-providers-amazon", "matplotlib"}
    assert bench_only <= extras["bench"] and not bench_only & (extras["test"] | extras["browser"])
    # ./dev builds the development environment with the test extra only; the others are added by name.
    dev = (REPO / "dev").read_text()
    assert "'.[test]'" in dev and "bench]" not in dev and "browser]" not in dev


@pytest.mark.parametrize("path", RENDERED)
def test_links_work_on_a_package_index_page(path: str) -> None:
    """A relative link is dead on PyPI's page; a link into the repository must name a file that exists."""
    links = MARKDOWN_LINK.findall((REPO / path).read_text())
    assert links, path
    for link in links:
        assert link.startswith("https://"), f"{path}: {link} is not an absolute URL"
        if not link.startswith(HOME):
            continue
        rest = link.removeprefix(HOME)
        target, _, anchor = rest.partition("#")
        match = re.fullmatch(r"/(?:blob|tree)/main/(.+)", target)
        if target in ("", "/"):
            file = REPO / "README.md"
        elif match:
            file = REPO / match.group(1)
        else:
            assert re.fullmatch(r"/(issues|releases/tag/v[\w.]+|compare/v[\w.]+\.\.\.HEAD)", target), f"{path}: {link}"
            continue
        assert file.exists(), f"{path}: {link} names {file.relative_to(REPO)}, which does not exist"
        if anchor:
            assert file.suffix == ".md" and anchor in headings(file), f"{path}: {link}: no heading #{anchor}"


def test_readme_connection_table_tells_how_each_auth_type_sends_the_secret() -> None:
    rows = {
        row.split("|")[1].strip(): row.split("|")[2]
        for row in readme_section("Connect to your service").splitlines()
        if row.startswith("| ")
    }
    assert "Bearer" not in rows["API token (password)"], "the password is not always sent as Bearer"
    for auth_type in AUTH_TYPES:
        assert f"`{auth_type}`" in rows["extra `auth_type`"], auth_type
    assert "extra `auth_header`" in rows and "Login" in rows


def test_readme_connection_examples_are_valid() -> None:
    section = readme_section("Connect to your service")
    examples = re.findall(r"AIRFLOW_CONN_JOBSERVICE_DEFAULT='(\{.*?\})'", section)
    assert len(examples) == 3  # Ray, Prefect, an API key header
    for example in examples:
        conn = json.loads(example)
        config = ServiceConfig.from_connection_fields(
            conn_id="jobservice_default", host=conn["host"], password=conn.get("password"), extra=conn["extra"]
        )
        assert config.base_url == conn["host"]
    (spec,) = re.findall(r"```json\n(.*?)```", section, re.S)
    dialect = DeclarativeDialect.from_options(json.loads(spec))
    assert dialect.spec.capabilities["idempotent_submit"] is False  # the minimal example sends no key: submits are not retried


def test_readme_leads_with_users_and_keeps_the_two_contributor_commands() -> None:
    text = (REPO / "README.md").read_text()
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert sections[:3] == ["Install", "Connect to your service", "Use it"], sections
    assert 'pip install "apache-airflow==${AIRFLOW_VERSION}" airflow-provider-jobservice' in text
    assert '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/' in text
    assert "airflow triggerer" in text
    # The first commands a contributor meets set everything up on a fresh machine.
    first_block = re.search(r"```bash\n(.*?)```", readme_section("Try it, and contribute"), re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["./dev demo", "./dev test"]
    dev = (REPO / "dev").read_text()
    assert "demo) ensure_venv;" in dev and "test) ensure_venv;" in dev
