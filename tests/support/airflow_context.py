"""The smallest task context our operators read, for driving execute() without a scheduler.

This is the one edge we fake in the integration tier: the task instance. The service,
the HTTP client and the trigger are real; the e2e tier runs the same operators in real
Airflow (dag.test()).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any


@dataclasses.dataclass
class FakeTaskInstance:
    dag_id: str = "test_dag"
    task_id: str = "test_task"
    run_id: str = dataclasses.field(default_factory=lambda: f"manual__{uuid.uuid4().hex[:8]}")
    map_index: int = -1
    try_number: int = 1
    start_date: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    xcom: dict[str, Any] = dataclasses.field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def make_context(**ti_fields: Any) -> dict[str, Any]:
    return {"ti": FakeTaskInstance(**ti_fields)}
