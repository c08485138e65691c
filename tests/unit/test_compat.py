"""The compatibility module detects what the installed Airflow has, and is the only place that asks.

Runs on every supported Airflow line (``JOBSERVICE_AIRFLOW``, docs/compatibility.md); the
expectations come from the installed release's version, independently of the detection.
"""

from __future__ import annotations

import ast
import asyncio
import threading
from importlib.metadata import version
from pathlib import Path

import airflow.sdk
import airflow.sdk.log
from airflow.triggers.base import BaseTrigger
from packaging.version import Version

from jobservice_provider import _compat

PROVIDER = Path(_compat.__file__).resolve().parent
AIRFLOW = Version(version("apache-airflow"))
# 3.3 added the task state store (with NEVER_EXPIRE), amask_secret and the trigger's on_kill.
ON_3_3_OR_LATER = AIRFLOW.release >= (3, 3)


def test_the_supported_lines_are_the_ones_installed_here() -> None:
    assert (3, 2) <= AIRFLOW.release[:2] <= (3, 4), AIRFLOW


def test_features_detected_match_the_installed_release() -> None:
    assert _compat.HAS_TASK_STATE_STORE is ON_3_3_OR_LATER
    assert _compat.TRIGGER_ON_KILL is ON_3_3_OR_LATER
    assert ("on_kill" in vars(BaseTrigger)) is ON_3_3_OR_LATER
    if ON_3_3_OR_LATER:
        assert _compat.NEVER_EXPIRE is airflow.sdk.NEVER_EXPIRE
        assert _compat.amask_secret is airflow.sdk.log.amask_secret  # type: ignore[attr-defined]
    else:
        assert _compat.NEVER_EXPIRE is None
        assert not hasattr(airflow.sdk.log, "amask_secret")


def test_task_state_store_is_read_from_the_context_and_absent_means_none() -> None:
    store = object()
    assert _compat.task_state_store({"task_state_store": store}) is store
    assert _compat.task_state_store({}) is None


async def test_amask_secret_masks_without_blocking_the_event_loop() -> None:
    secret = "s3cr3t-" + "a1b2c3d4e5"
    loop_thread = threading.get_ident()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beside = asyncio.create_task(ticker())
    await _compat.amask_secret(secret)
    beside.cancel()
    assert threading.get_ident() == loop_thread
    assert airflow.sdk.log.redact(f"token {secret} sent") == "token *** sent"
    if not ON_3_3_OR_LATER:
        assert ticks >= 1  # the fallback ran mask_secret in a thread while the loop went on


# What only _compat may import from Airflow: every name that differs between the lines.
_VERSION_DEPENDENT_MODULES = {
    "airflow.exceptions",
    "airflow.sdk.exceptions",
    "airflow.sdk.log",
    "airflow.sdk.execution_time.context",
}
_VERSION_DEPENDENT_NAMES = {"NEVER_EXPIRE", "amask_secret", "mask_secret"}


def test_only_the_compat_module_imports_what_differs_between_airflow_lines() -> None:
    offenders = []
    for path in sorted(PROVIDER.rglob("*.py")):
        if path.name == "_compat.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(PROVIDER)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("airflow"):
                names = {alias.name for alias in node.names}
                if node.module in _VERSION_DEPENDENT_MODULES or names & _VERSION_DEPENDENT_NAMES:
                    offenders.append(f"{where} from {node.module} import {', '.join(sorted(names))}")
            elif isinstance(node, ast.Constant) and node.value == "task_state_store":
                offenders.append(f"{where} reads the task state store itself")
    assert offenders == [], "import these from jobservice_provider._compat instead:\n" + "\n".join(offenders)
