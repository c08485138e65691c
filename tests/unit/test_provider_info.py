"""Provider metadata: everything it names imports, and the trigger survives serialization."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points

from jobservice_provider import get_provider_info
from jobservice_provider.triggers.jobservice import JobStatusTrigger


def _import_dotted(path: str) -> object:
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


def test_every_dotted_path_in_provider_info_imports() -> None:
    info = get_provider_info()
    paths = [m for kind in ("hooks", "triggers", "sensors", "operators") for entry in info[kind] for m in entry["python-modules"]]
    paths += [c["hook-class-name"] for c in info["connection-types"]]
    assert len(paths) == 5
    for path in paths:
        assert _import_dotted(path) is not None, path
    hook_cls = _import_dotted(info["connection-types"][0]["hook-class-name"])
    assert hook_cls.conn_type == info["connection-types"][0]["connection-type"] == "jobservice"


def test_entry_point_and_package_name_match_the_distribution() -> None:
    (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("jobservice_provider")]
    assert ep.load() is get_provider_info
    assert ep.dist is not None and ep.dist.metadata["Name"] == get_provider_info()["package-name"]


def test_trigger_serializes_to_plain_json_and_round_trips() -> None:
    trigger = JobStatusTrigger(
        job_id="j/1 ?&",
        jobservice_conn_id="svc",
        target_statuses=["succeeded"],
        poll_policy={"interval": 3, "max_interval": 30},
        retry_policy={"budget": 120},
        deadline=1_800_000_000.5,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "jobservice_provider.triggers.jobservice.JobStatusTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    rebuilt = _import_dotted(classpath)(**json.loads(json.dumps(kwargs)))  # type: ignore[operator]
    assert rebuilt.serialize() == (classpath, kwargs)
    assert not any("attempt" in key or "max_polls" in key for key in json.dumps(kwargs).split('"'))
