"""The built-in job types and the validation of their ``params`` (pure functions)."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from jobservice_local.problems import Problem, invalid_params

SLEEP = "sleep"
PYTHON = "python"
COMMAND = "command"
KNOWN_TYPES: tuple[str, ...] = (COMMAND, PYTHON, SLEEP)
#: which CLI flag enables an opt-in job type.
ENABLING_FLAG: dict[str, str] = {PYTHON: "--allow-python", COMMAND: "--allow-command"}

MAX_STEPS = 10_000
_CALLABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclasses.dataclass(frozen=True, slots=True)
class SleepSpec:
    """A validated ``sleep`` job."""

    seconds: float
    steps: int
    fail: str | None
    result: Any


@dataclasses.dataclass(frozen=True, slots=True)
class PythonSpec:
    """A validated ``python`` job."""

    callable: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class CommandSpec:
    """A validated ``command`` job."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None


JobSpec = SleepSpec | PythonSpec | CommandSpec


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _reject_unknown(job_type: str, params: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise invalid_params(
            f"unknown param {unknown[0]!r} for job type {job_type!r}; allowed: {', '.join(allowed)}",
            param=unknown[0],
        )


def check_type(job_type: str, enabled: frozenset[str]) -> None:
    """Raise the right problem if ``job_type`` is unknown (422) or not enabled (403)."""
    if job_type not in KNOWN_TYPES:
        raise Problem(
            422,
            "unknown-job-type",
            f"unknown job type {job_type!r}; known types: {', '.join(KNOWN_TYPES)}",
            known_types=list(KNOWN_TYPES),
        )
    if job_type not in enabled:
        flag = ENABLING_FLAG[job_type]
        raise Problem(
            403,
            "job-type-disabled",
            f"job type {job_type!r} is disabled; start jobservice-local with {flag} to enable it",
            job_type=job_type,
        )


def parse_spec(job_type: str, params: dict[str, Any]) -> JobSpec:
    """Validate ``params`` for ``job_type``; raise a 422 problem naming the bad param."""
    if job_type == SLEEP:
        return _sleep(params)
    if job_type == PYTHON:
        return _python(params)
    if job_type == COMMAND:
        return _command(params)
    raise ValueError(f"unknown job type {job_type!r}")


def _sleep(params: dict[str, Any]) -> SleepSpec:
    _reject_unknown(SLEEP, params, ("seconds", "steps", "fail", "result"))
    seconds = params.get("seconds", 1)
    if not _is_number(seconds) or seconds < 0:
        raise invalid_params("param 'seconds' must be a number >= 0", param="seconds")
    steps = params.get("steps", 1)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise invalid_params(f"param 'steps' must be an integer from 1 to {MAX_STEPS}", param="steps")
    fail_param = params.get("fail", False)
    if isinstance(fail_param, bool):
        fail = "sleep job asked to fail" if fail_param else None
    elif isinstance(fail_param, str):
        fail = fail_param or "sleep job asked to fail"
    else:
        raise invalid_params("param 'fail' must be a boolean or a string", param="fail")
    result = params.get("result", {"slept": seconds})
    return SleepSpec(seconds=float(seconds), steps=steps, fail=fail, result=result)


def _python(params: dict[str, Any]) -> PythonSpec:
    _reject_unknown(PYTHON, params, ("callable", "args", "kwargs"))
    target = params.get("callable")
    if not isinstance(target, str) or not _CALLABLE.match(target):
        raise invalid_params("param 'callable' must be a string 'package.module:function'", param="callable")
    args = params.get("args", [])
    if not isinstance(args, list):
        raise invalid_params("param 'args' must be a list", param="args")
    kwargs = params.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise invalid_params("param 'kwargs' must be an object", param="kwargs")
    return PythonSpec(callable=target, args=args, kwargs=kwargs)


def _command(params: dict[str, Any]) -> CommandSpec:
    _reject_unknown(COMMAND, params, ("argv", "env", "cwd"))
    if "argv" not in params:
        raise invalid_params("param 'argv' is required", param="argv")
    argv = params["argv"]
    if isinstance(argv, str):
        raise invalid_params("argv must be a list; shell strings are not accepted", param="argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise invalid_params("param 'argv' must be a non-empty list of strings", param="argv")
    if not argv[0] or any("\x00" in a for a in argv):
        raise invalid_params("param 'argv' must not hold an empty program or NUL characters", param="argv")
    env = params.get("env", {})
    if env is None:
        env = {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\x00" not in k + v for k, v in env.items()
    ):
        raise invalid_params("param 'env' must be an object of string names to string values", param="env")
    cwd = params.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not cwd or "\x00" in cwd):
        raise invalid_params("param 'cwd' must be a non-empty string", param="cwd")
    return CommandSpec(argv=list(argv), env=dict(env), cwd=cwd)
