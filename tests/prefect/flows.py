"""The test flows, served by one runner in .prefect-venv (run as a script; never imported by the tests).

Each flow is a deployment named after it. A flow that has a result for Airflow publishes it as
the preset's result artifact (docs/presets/prefect.md): its key is ``airflow-result``, its text
the result as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from prefect.artifacts import create_markdown_artifact

from prefect import flow, get_run_logger, serve

RESULT_KEY = "airflow-result"


@flow(name="echo")
def echo(result: Any = None, publish: bool = True) -> Any:
    """Logs a line and returns ``result``; with ``publish`` (the preset's pattern) as the result artifact."""
    get_run_logger().info("echo: working on %s", json.dumps(result))
    if publish:
        create_markdown_artifact(json.dumps(result), key=RESULT_KEY, description="the flow's result, for Airflow")
    return result


@flow(name="long")
def long(seconds: float = 120) -> None:
    """Ticks every 0.2 s for ``seconds``: a run to cancel or to time out."""
    logger = get_run_logger()
    for tick in range(int(seconds * 5)):
        logger.info("tick %d", tick)
        time.sleep(0.2)


@flow(name="gate")
def gate(flag: str, timeout: float = 180) -> str:
    """Runs until the file ``flag`` exists (a test opens the gate when it is ready), then completes."""
    logger = get_run_logger()
    logger.info("waiting for %s", flag)
    deadline = time.monotonic() + timeout
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} did not appear within {timeout:g}s")
        time.sleep(0.2)
    logger.info("gate open")
    return "opened"


@flow(name="fail")
def fail(message: str = "boom") -> None:
    get_run_logger().info("about to fail")
    raise ValueError(message)


@flow(name="chatty")
def chatty(lines: int = 500, seconds: float = 2.0) -> int:
    """Logs ``lines`` numbered lines over ``seconds``; the last ones reach the server after the run completed."""
    logger = get_run_logger()
    for number in range(1, lines + 1):
        logger.info("line %d of %d", number, lines)
        time.sleep(seconds / lines)
    create_markdown_artifact(json.dumps(lines), key=RESULT_KEY, description="the flow's result, for Airflow")
    return lines


if __name__ == "__main__":
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    serve(
        echo.to_deployment("echo"),
        long.to_deployment("long"),
        gate.to_deployment("gate"),
        fail.to_deployment("fail"),
        chatty.to_deployment("chatty"),
        limit=limit,
    )
