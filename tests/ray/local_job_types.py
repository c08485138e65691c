"""The local service's ``sleep`` job type, run on Ray: it lives with the tests, not in the ray dialect.

The example DAGs use ``job_type="sleep"``. To run them on Ray unchanged, only the connection
changes: the ray dialect's ``dialect_options.job_types`` maps ``sleep`` to :data:`SLEEP_PROGRAM`,
which Ray runs with the job's params as its last argument (JSON), and whose last log line is
the job's result.
"""

from __future__ import annotations

from typing import Any

# Steps, result and failure as the local service's sleep job (jobservice_local.jobtypes) does them.
SLEEP_PROGRAM = """\
import json, sys, time
params = json.loads(sys.argv[-1])
seconds, steps = params.get("seconds", 1), params.get("steps", 1)
fail, result = params.get("fail", False), params.get("result", {"slept": seconds})
if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
    sys.exit("param 'seconds' must be a number >= 0")
if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    sys.exit("param 'steps' must be an integer >= 1")
for step in range(1, steps + 1):
    time.sleep(seconds / steps)
    print(f"step {step}/{steps}", flush=True)
if fail:
    sys.exit(fail if isinstance(fail, str) else "sleep job asked to fail")
print(json.dumps(result), flush=True)
"""

#: ``dialect_options`` of a ray connection that runs the example DAGs' ``sleep`` jobs.
LOCAL_JOB_TYPES_ON_RAY: dict[str, Any] = {
    "job_types": {"sleep": {"argv": ["python", "-c", SLEEP_PROGRAM], "result_from_logs": True}},
}
