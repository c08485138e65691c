"""The provider's timing settings, in Airflow's config section ``[jobservice]``.

Declared (with these defaults and their descriptions) in the ``config`` section of
``get_provider_info()``, so ``airflow config list`` shows them; set them like any Airflow option,
e.g. ``AIRFLOW__JOBSERVICE__CANCEL_WAIT=120``. Read when used, so a changed value reaches the next
task or wait. No Airflow import at module level: provider info stays cheap to load.
"""

from __future__ import annotations

import math
from typing import NamedTuple

SECTION = "jobservice"


class Setting(NamedTuple):
    default: float
    description: str


SECONDS: dict[str, Setting] = {
    "connection_cache_ttl": Setting(
        30.0,
        "Seconds one read of a connection serves the waits that start in the same triggerer process "
        "(a thousand waits starting together make one trip to the connection store, not a thousand). "
        "An edited connection reaches new waits at most this much later; 0 reads it for every wait.",
    ),
    "cancel_wait": Setting(
        60.0,
        "Seconds a task that ends without its job (killed on the worker, timed out, stale) waits for "
        "the cancelled job to stop (CANCELLED or ended), transient errors retried, before it gives up "
        "and logs that the job may still run.",
    ),
    "log_tail_timeout": Setting(
        30.0,
        "Seconds the operator may spend copying the end of the remote log into the task log when the "
        "job has ended, transient errors retried. The tail is a courtesy: a service that cannot serve "
        "it delays the task by at most this long and never fails it.",
    ),
}


def seconds(option: str) -> float:
    """``[jobservice] <option>`` in seconds (its default when unset); a bad value is an error naming it."""
    from airflow.sdk import conf

    default = SECONDS[option].default
    raw = conf.get(SECTION, option, fallback=None)
    if raw is None or not str(raw).strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"[{SECTION}] {option} must be a number of seconds >= 0, got {raw!r}")
    return value


def provider_config_options() -> dict[str, dict[str, str]]:
    """The options above as ``get_provider_info()["config"]`` declares them."""
    return {
        name: {
            "description": setting.description,
            "version_added": "0.1.0",
            "type": "float",
            "example": f"{setting.default * 2:g}",
            "default": f"{setting.default:g}",
        }
        for name, setting in SECONDS.items()
    }
