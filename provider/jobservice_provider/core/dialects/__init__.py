"""Dialects map the generic job operations onto one service's HTTP API (pure, no I/O).

``get_dialect(name, options)`` is the registry: the connection's ``dialect`` extra names
one, and its ``dialect_options`` extra configures it (validated when the connection is read).
The built-in dialects are always there; other packages add theirs under the entry point group
``jobservice_provider.dialects`` (entry point name = dialect name, value = a :class:`Dialect`
subclass), e.g. in their pyproject.toml::

    [project.entry-points."jobservice_provider.dialects"]
    acme = "acme_jobs.dialect:AcmeDialect"
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from jobservice_provider.core.config import DIALECT_ENTRY_POINT_GROUP, dialect_names, installed_dialects
from jobservice_provider.core.dialects.base import (
    BatchLookup,
    Dialect,
    FollowUp,
    ListQuery,
    LogChunk,
    OffsetLogs,
    Page,
    RecordLogs,
    RecordPage,
    SubmitRequest,
    Watch,
    WholeLogs,
    slice_log,
)
from jobservice_provider.core.dialects.declarative import DeclarativeDialect
from jobservice_provider.core.dialects.native import NativeDialect
from jobservice_provider.core.dialects.ray import RayDialect
from jobservice_provider.core.errors import ConfigurationError

__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "BatchLookup",
    "DeclarativeDialect",
    "Dialect",
    "FollowUp",
    "ListQuery",
    "LogChunk",
    "NativeDialect",
    "OffsetLogs",
    "Page",
    "RayDialect",
    "RecordLogs",
    "RecordPage",
    "SubmitRequest",
    "Watch",
    "WholeLogs",
    "dialect_class",
    "dialect_names",
    "get_dialect",
    "slice_log",
]

ENTRY_POINT_GROUP = DIALECT_ENTRY_POINT_GROUP
# Always available by these names (config.DIALECTS); an installed dialect cannot take one over.
BUILT_IN: Mapping[str, type[Dialect]] = {
    "native": NativeDialect,
    "ray": RayDialect,
    "declarative": DeclarativeDialect,
}


def get_dialect(name: str, options: Mapping[str, Any] | str | None = None) -> Dialect:
    """The dialect registered under ``name``, configured by ``options`` (an object or its JSON text).

    Raises :class:`ConfigurationError` naming the bad field, or for an unknown name, the
    dialects that are installed. Dialects are immutable, so one instance per (name, options)
    is shared.
    """
    text = (options or "{}") if isinstance(options, str) else json.dumps(dict(options or {}), sort_keys=True)
    return _build(name, text)


def dialect_class(name: str) -> type[Dialect]:
    """The class registered under ``name`` (built in or installed)."""
    built_in = BUILT_IN.get(name)
    if built_in is not None:
        return built_in
    entry_point = installed_dialects().get(name)
    if entry_point is None:
        raise ConfigurationError(f"unknown dialect {name!r}; installed dialects: {', '.join(dialect_names())}")
    where = f"dialect {name!r} (entry point {entry_point.value!r} in group {ENTRY_POINT_GROUP!r})"
    try:
        loaded = entry_point.load()
    except Exception as exc:  # whatever importing someone else's package raises
        raise ConfigurationError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Dialect)):
        raise ConfigurationError(f"{where} is {loaded!r}, not a subclass of jobservice_provider.core.dialects.Dialect")
    return loaded


@functools.lru_cache(maxsize=64)
def _build(name: str, options_json: str) -> Dialect:
    cls = dialect_class(name)
    try:
        options = json.loads(options_json)
    except ValueError as exc:
        raise ConfigurationError(f"dialect_options is not valid JSON ({exc})") from None
    if not isinstance(options, dict):
        raise ConfigurationError("dialect_options must be a JSON object")
    dialect = cls.from_options(options)
    if not isinstance(dialect, Dialect):
        raise ConfigurationError(f"dialect {name!r}: {cls.__name__}.from_options returned {dialect!r}, not a Dialect")
    return dialect
