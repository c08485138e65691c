"""The connection form (provider info) and docs/connection.md stay in step with the allow-listed extras."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from jobservice_provider import get_provider_info
from jobservice_provider.core.config import DIALECTS, KNOWN_EXTRAS, ServiceConfig, dialect_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "connection.md"
AIRFLOW_SCHEMAS = ("provider.yaml.schema.json", "customized_form_field_behaviours.schema.json")


def connection_type() -> dict[str, Any]:
    (entry,) = get_provider_info()["connection-types"]
    return dict(entry)


def doc_section_rows(heading: str) -> dict[str, list[str]]:
    """The rows of the first table under ``## heading``, keyed by their first cell without backticks."""
    text = DOC.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]  # skip header and rule
    return {row[0].strip("`"): row for row in cells}


def airflow_schema(name: str) -> dict[str, Any] | None:
    try:
        import airflow
    except ImportError:
        return None
    path = Path(airflow.__file__).parent / name
    return json.loads(path.read_text()) if path.exists() else None


def test_conn_fields_are_exactly_the_allow_listed_extras() -> None:
    assert list(connection_type()["conn-fields"]) == list(KNOWN_EXTRAS)


def test_dialect_choices_follow_the_known_dialects() -> None:
    # The built-in ones, then any installed by entry point (./dev installs the test package's "example").
    assert connection_type()["conn-fields"]["dialect"]["schema"]["enum"] == dialect_names()
    assert dialect_names()[: len(DIALECTS)] == list(DIALECTS)


def test_form_defaults_match_the_hooks_defaults() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(ServiceConfig)}
    for name, spec in connection_type()["conn-fields"].items():
        if "default" in spec["schema"]:
            assert spec["schema"]["default"] == defaults[name], name
    # An untouched switch must not read as "off" while the hook verifies TLS.
    assert connection_type()["conn-fields"]["verify_tls"]["schema"]["default"] is True


def test_conn_fields_are_valid_for_airflow() -> None:
    fields = connection_type()["conn-fields"]
    schema = airflow_schema("provider.yaml.schema.json")
    if schema is not None:
        import jsonschema

        conn_fields_schema = schema["properties"]["connection-types"]["items"]["properties"]["conn-fields"]
        jsonschema.validate(fields, conn_fields_schema)
    for name, spec in fields.items():
        assert {"label", "schema"} <= set(spec), name
        assert "type" in spec["schema"], name
        assert "null" in spec["schema"]["type"], f"{name}: an empty form field must be allowed (it means the default)"


def test_ui_field_behaviour_is_valid_for_airflow() -> None:
    behaviour = connection_type()["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"schema", "port"}
    assert behaviour["relabeling"] == {"host": "Base URL", "login": "Login (basic auth)", "password": "API token"}
    schema = airflow_schema("customized_form_field_behaviours.schema.json")
    if schema is not None:
        import jsonschema

        # ProvidersManager validates the snake_case form of the kebab-case keys.
        jsonschema.validate({key.replace("-", "_"): value for key, value in behaviour.items()}, schema)


def test_every_extra_and_form_field_is_documented_with_its_label_and_default() -> None:
    rows = doc_section_rows("Extra fields")
    fields = connection_type()["conn-fields"]
    assert set(rows) == set(KNOWN_EXTRAS) == set(fields), "docs/connection.md's extra table is out of step"
    defaults = {f.name: f.default for f in dataclasses.fields(ServiceConfig)}
    for name, (_, label, kind, default, meaning) in rows.items():
        assert label == fields[name]["label"], f"{name}: the doc says {label!r}, the form {fields[name]['label']!r}"
        assert kind and meaning, name
        value = defaults[name]
        if isinstance(value, bool | str) and value != "":
            assert json.dumps(value) in default, f"{name}: the doc's default {default!r} is not {json.dumps(value)}"
        elif isinstance(value, int | float):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            assert re.search(rf"\b{shown}\b", default), f"{name}: the doc's default {default!r} is not {shown}"


def test_standard_fields_are_documented_as_the_form_shows_them() -> None:
    rows = doc_section_rows("Standard fields")
    behaviour = connection_type()["ui-field-behaviour"]
    for field, label in behaviour["relabeling"].items():
        assert any(key.startswith(field) and f"**{label}**" in key for key in rows), f"{field} ({label}) is not documented"
    for field in behaviour["hidden-fields"]:
        assert rows[field][1] == "hidden", field


def test_the_documented_example_is_a_valid_connection() -> None:
    example = re.search(r"AIRFLOW_CONN_JOBSERVICE_DEFAULT='(\{.*?\})'", DOC.read_text(), re.S)
    assert example, "docs/connection.md has no AIRFLOW_CONN_JOBSERVICE_DEFAULT example"
    conn = json.loads(example.group(1))
    config = ServiceConfig.from_connection_fields(conn_id="jobservice_default", host=conn["host"], extra=conn["extra"])
    assert config.base_url == conn["host"]
    assert set(conn["extra"]) <= set(KNOWN_EXTRAS)


def test_the_whole_provider_info_matches_airflows_provider_info_schema() -> None:
    import jsonschema

    schema = airflow_schema("provider_info.schema.json")
    assert schema is not None, "Airflow ships provider_info.schema.json; where did it go?"
    jsonschema.validate(get_provider_info(), schema)
    option = get_provider_info()["config"]["jobservice"]["options"]["triggerer_gc_freeze"]
    assert option["default"] == "False"  # a library changes the whole process only when asked
