"""Run N JobStatusTriggers in one event loop with asyncio debug on, as a triggerer process does.

Usage: python -m tests.support.loop_probe N   (connection jobservice_default from the environment)

Prints one JSON line: the events' statuses and every callback asyncio reported as slower
than 50 ms. Runs in its own process so the test runner's heap and output capture are not
part of what is measured.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from typing import Any

from jobservice_provider.core.dialects import SubmitRequest

SLOW_CALLBACK_SECONDS = 0.05


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "took" in record.getMessage():
            self.messages.append(record.getMessage())


async def _first_event(trigger: Any) -> dict[str, Any]:
    return (await anext(trigger.run())).payload  # type: ignore[no-any-return]


async def _main(count: int, slow: _SlowCallbacks) -> list[str]:
    from jobservice_provider.hooks.jobservice import JobServiceHook
    from jobservice_provider.triggers.jobservice import JobStatusTrigger

    hook = JobServiceHook()
    jobs = [await hook.asubmit(SubmitRequest("sleep", {"seconds": 2})) for _ in range(count + 1)]
    triggers = [JobStatusTrigger(job_id=j.id, poll_policy={"interval": 0.5}, follow_logs=True) for j in jobs]
    loop = asyncio.get_running_loop()
    # One wait first, as in a triggerer that has been running: its one-time imports
    # (Airflow's connection and secrets machinery) are not what is measured.
    await _first_event(triggers[0])
    # A full (gen-2) garbage collection walks all of Airflow's imported objects and stops the
    # loop for 100-200 ms here, whatever the triggers do; freezing them keeps the collector
    # to new objects, so what remains measured is the triggers' own work.
    gc.freeze()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
    logging.getLogger("asyncio").addHandler(slow)
    events = await asyncio.gather(*[_first_event(t) for t in triggers[1:]])
    loop.set_debug(False)
    return [e["status"] for e in events]


def main(count: int) -> None:
    slow = _SlowCallbacks()
    statuses = asyncio.run(_main(count, slow))
    print("LOOP-PROBE " + json.dumps({"statuses": statuses, "slow_callbacks": slow.messages}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
