"""What differs between the Airflow versions this provider supports (3.2, 3.3, 3.4): detected, not assumed.

Every other module takes these names from here, so a difference between versions lives in one
place. docs/compatibility.md says what each version lacks and what that means for a user.

- ``amask_secret``: Airflow 3.3 added it; on 3.2 the sync ``mask_secret`` runs in a worker
  thread, because called on the triggerer's event loop it can only tell the supervisor through a
  greenback portal, which a shared config read (its own asyncio task) does not have.
- ``NEVER_EXPIRE``: public in ``airflow.sdk`` from 3.3, with the task state store it belongs to.
- ``TRIGGER_ON_KILL``: Airflow 3.3's triggerer calls ``BaseTrigger.on_kill`` when a user ends a
  deferred task (mark failed/success, clear); 3.2 cancels the trigger without calling it.
- ``task_state_store(context)``: the task's state store (Airflow 3.3), or ``None`` (3.2).
- The exceptions tasks raise, all in ``airflow.sdk.exceptions`` on 3.2 and later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    TaskDeferralTimeout,
)
from airflow.sdk.log import mask_secret
from airflow.triggers.base import BaseTrigger

try:
    from airflow.sdk.log import amask_secret
except ImportError:  # Airflow 3.2

    async def amask_secret(secret: Any, name: str | None = None) -> None:  # type: ignore[misc]
        """Mask ``secret`` in this process's logs and tell the supervisor, without blocking the event loop."""
        await asyncio.to_thread(mask_secret, secret, name)


try:
    from airflow.sdk import NEVER_EXPIRE  # type: ignore[attr-defined,unused-ignore]  # (not in its type stub)
except ImportError:  # Airflow 3.2: no task state store, so nothing is ever stored with a retention
    NEVER_EXPIRE = None  # type: ignore[assignment,unused-ignore]

#: Whether Airflow has a task state store (3.3 and later; ``NEVER_EXPIRE`` came with it).
HAS_TASK_STATE_STORE: bool = NEVER_EXPIRE is not None

#: Whether Airflow calls a trigger's ``on_kill`` when a user ends its deferred task (3.3 and later).
TRIGGER_ON_KILL: bool = callable(getattr(BaseTrigger, "on_kill", None))

#: The context key of Airflow's task state store (3.3 and later).
_TASK_STATE_STORE = "task_state_store"


def task_state_store(context: Mapping[str, Any]) -> Any | None:
    """The task instance's state store (Airflow 3.3 and later), or ``None`` where Airflow has none (3.2)."""
    return context.get(_TASK_STATE_STORE)


__all__ = [
    "HAS_TASK_STATE_STORE",
    "NEVER_EXPIRE",
    "TRIGGER_ON_KILL",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "TaskDeferralTimeout",
    "amask_secret",
    "mask_secret",
    "task_state_store",
]
