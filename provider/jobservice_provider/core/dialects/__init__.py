"""Dialects map the generic job operations onto one service's HTTP API (pure, no I/O).

``get_dialect(name, options)`` is the registry: the connection's ``dialect`` extra names
one, and its ``dialect_options`` extra configures it (validated when the connection is read).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from jobservice_provider.core.dialects.base import Dialect, FollowUp, LogChunk, Page, slice_log
from jobservice_provider.core.dialects.declarative import DeclarativeDialect
from jobservice_provider.core.dialects.native import NativeDialect
from jobservice_provider.core.dialects.ray import RayDialect
from jobservice_provider.core.errors import ConfigurationError

__all__ = [
    "REGISTRY",
    "DeclarativeDialect",
    "Dialect",
    "FollowUp",
    "LogChunk",
    "NativeDialect",
    "Page",
    "RayDialect",
    "get_dialect",
    "slice_log",
]

# name -> factory taking the (possibly empty) dialect_options object.
REGISTRY: dict[str, Callable[[Mapping[str, Any]], Dialect]] = {
    "native": NativeDialect.from_options,
    "ray": RayDialect.from_options,
    "declarative": DeclarativeDialect.from_options,
}


def get_dialect(name: str, options: Mapping[str, Any] | str | None = None) -> Dialect:
    """The dialect registered under ``name``, configured by ``options`` (an object or its JSON text).

    Raises :class:`ConfigurationError` naming the bad field. Dialects are immutable, so one
    instance per (name, options) is shared.
    """
    text = (options or "{}") if isinstance(options, str) else json.dumps(dict(options or {}), sort_keys=True)
    return _build(name, text)


@functools.lru_cache(maxsize=64)
def _build(name: str, options_json: str) -> Dialect:
    factory = REGISTRY.get(name)
    if factory is None:
        raise ConfigurationError(f"unknown dialect {name!r}; one of {', '.join(REGISTRY)}")
    try:
        options = json.loads(options_json)
    except ValueError as exc:
        raise ConfigurationError(f"dialect_options is not valid JSON ({exc})") from None
    if not isinstance(options, dict):
        raise ConfigurationError("dialect_options must be a JSON object")
    return factory(options)
