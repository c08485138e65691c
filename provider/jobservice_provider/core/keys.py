"""Idempotency keys of Airflow task instances: derived, scoped, and shortened to what services accept.

Pure functions: the operator builds a task's keys from these, a retry rebuilds the keys of the
earlier tries from them, and tests check them without a service.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# The longest key sent. The native API (and most services that take an Idempotency-Key header)
# accept 1 to 255 printable characters; an Airflow task's key can be far longer (dag_id and
# task_id up to 250 characters each, a run id, a map index).
MAX_KEY_LENGTH = 255
# Hex digits of the SHA-256 of the whole key that end a shortened key (160 bits).
KEY_HASH_DIGITS = 40
_KEEP = MAX_KEY_LENGTH - 1 - KEY_HASH_DIGITS


def task_key(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """The key a task instance's first try submits under (before shortening)."""
    return f"airflow:{dag_id}:{task_id}:{run_id}:{map_index}"


def try_key(base: str, try_number: int) -> str:
    """The key under which try ``try_number`` submits a job of its own when the job under
    ``base`` (or an earlier try's) ended without success: ``base:try<N>``."""
    return f"{base}:try{try_number}"


def map_scoped(key: str, map_index: int) -> str:
    """A custom key of one mapped task instance: ``<key>:map<index>``, so the instances of a
    ``.partial(idempotency_key=…)`` do not share one job."""
    return key if map_index < 0 else f"{key}:map{map_index}"


def sendable(key: str) -> str:
    """``key`` as sent: unchanged when it is at most 255 printable ASCII characters; otherwise
    its first 214 characters (others than printable ASCII as ``?``), ``#`` and the first 40
    hex digits of the SHA-256 of the whole key. The same key always gives the same result, and
    two keys differ after shortening whenever they differ before (short of a SHA-256 collision).
    """
    if len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable():
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_HASH_DIGITS]
    prefix = "".join(c if c.isascii() and c.isprintable() else "?" for c in key[:_KEEP])
    return f"{prefix}#{digest}"


def inputs_fingerprint(job_type: str, params: Any, meta: Any) -> str:
    """A stable hash of what a job is asked to do (type, params, meta): a retry or a clear whose
    inputs changed can tell that the job of an earlier try was computed from other inputs."""
    canonical = json.dumps({"type": job_type, "params": params, "meta": meta}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def inputs_key(base: str, fingerprint: str) -> str:
    """The key under which a task submits after its inputs changed: one per set of inputs, so a
    retry with the same changed inputs finds that job again, even without a task state store."""
    return f"{base}:inputs-{fingerprint[:16]}"
