"""The declarative spec's JSON Schema is valid, every shipped spec passes it, and the reference in
docs/dialects.md and docs/declarative-spec.schema.json are what scripts/spec_reference.py writes."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import jsonschema
import pytest
from tests.conftest import REPO

from jobservice_provider.core.dialects.spec_schema import SCHEMA, SpecError, validate
from jobservice_provider.presets import available, preset_spec

DOC = REPO / "docs" / "dialects.md"


def load_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("spec_reference", REPO / "scripts" / "spec_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_docs_are_generated_from_the_schema() -> None:
    script = load_script()
    for path, text in script.expected().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run python scripts/spec_reference.py"
    assert script.main(["--check"]) == 0


def test_the_check_names_a_stale_file(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    script = load_script()
    stale = tmp_path / "declarative-spec.schema.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(script, "SCHEMA_FILE", stale)
    monkeypatch.setattr(script, "ROOT", tmp_path.parent)
    assert script.main(["--check"]) == 1
    assert "declarative-spec.schema.json differs" in capsys.readouterr().err


def test_every_documented_and_shipped_spec_passes_the_schema() -> None:
    blocks = re.findall(r"<!-- spec:(\w+) -->\s*```json\n(.*?)\n```", DOC.read_text(), re.S)
    assert {name for name, _ in blocks} >= {"inhouse", "ray"}
    for _, text in blocks:
        validate(json.loads(text))
    for name in available():
        validate(preset_spec(name))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "dialect_options: must be an object, got list"),
        ({"operations": {}}, "operations.submit: is required: start a job"),
        ({"operations": {"get": {"path": "/x", "query": {"a": [1]}}}}, "operations.get.query.a: must be a string template"),
        (
            {"record": {"id": "i", "status": "s", "error": {"kind": "k"}}},
            "record.error.kind: unknown key; allowed: type, message",
        ),
        ({"status_map": {"done": 1}}, "status_map.done: 1 is not one of QUEUED"),
        ({"capabilities": {"logs": "yes"}}, "capabilities.logs: must be true or false, got 'yes'"),
    ],
)
def test_schema_errors_name_the_field(spec: object, message: str) -> None:
    base = {
        "operations": {"submit": {"path": "/s"}, "get": {"path": "/g/{job_id}"}},
        "record": {"id": "id", "status": "s"},
        "status_map": {"ok": "SUCCEEDED"},
    }
    document = {**base, **spec} if isinstance(spec, dict) else spec
    if isinstance(spec, dict) and "operations" in spec and spec["operations"]:
        document["operations"] = {**base["operations"], **spec["operations"]}
    with pytest.raises(SpecError) as caught:
        validate(document)
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_script_runs_as_documented() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "spec_reference.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
