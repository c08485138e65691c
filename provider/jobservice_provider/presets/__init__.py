"""Presets: named, versioned declarative specs for services many users already run.

A connection names one instead of writing a spec::

    {"dialect": "declarative", "dialect_options": {"preset": "prefect"}}

``"prefect"`` is the newest version; ``"prefect@1"`` pins version 1, which never changes once
released (a change that could break a connection becomes version 2). Any other member of
``dialect_options`` is an override, merged over the preset's spec: objects merge member by
member, any other value replaces the preset's, and ``null`` removes the preset's member.
Each preset is a JSON file beside this module, ``<name>.v<version>.json``; its page is
docs/presets/<name>.md.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from jobservice_provider.core.errors import ConfigurationError

_FILE = re.compile(r"^([a-z][a-z0-9_-]*)\.v([1-9][0-9]*)\.json$")
_NAME = re.compile(r"^([a-z][a-z0-9_-]*)(?:@([1-9][0-9]*))?$")


@functools.cache
def available() -> dict[str, tuple[int, ...]]:
    """Preset name -> its versions, ascending."""
    found: dict[str, list[int]] = {}
    for entry in resources.files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.setdefault(match.group(1), []).append(int(match.group(2)))
    return {name: tuple(sorted(versions)) for name, versions in sorted(found.items())}


@functools.cache
def _load(name: str, version: int) -> dict[str, Any]:
    document = json.loads(resources.files(__name__).joinpath(f"{name}.v{version}.json").read_text("utf-8"))
    spec: dict[str, Any] = document["spec"]
    return spec


def preset_spec(reference: Any) -> dict[str, Any]:
    """The spec of preset ``reference`` (``"name"`` for the newest version, ``"name@N"`` for version N), a fresh copy."""
    match = _NAME.match(reference) if isinstance(reference, str) else None
    presets = available()
    listing = ", ".join(f"{name} (versions {', '.join(map(str, versions))})" for name, versions in presets.items())
    if match is None:
        raise ConfigurationError(f"preset: must be a preset name, optionally with @version (e.g. 'prefect@1'), got {reference!r}")
    name, version = match.group(1), match.group(2)
    if name not in presets:
        raise ConfigurationError(f"preset: unknown preset {name!r}; the provider ships {listing}")
    chosen = presets[name][-1] if version is None else int(version)
    if chosen not in presets[name]:
        raise ConfigurationError(f"preset: {name!r} has no version {chosen}; it has {', '.join(map(str, presets[name]))}")
    return copy.deepcopy(_load(name, chosen))


def merge(base: Any, override: Any) -> Any:
    """``override`` merged over ``base``: objects member by member, ``null`` removes, anything else replaces."""
    if not (isinstance(base, Mapping) and isinstance(override, Mapping)):
        return copy.deepcopy(override)
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge(base.get(key), value)
    return merged


def resolve(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """``dialect_options`` with a ``preset`` member replaced by that preset's spec, its other members merged over it.

    Options without ``preset`` are returned unchanged (a spec written out in full).
    """
    if "preset" not in options:
        return options
    overrides = {key: value for key, value in options.items() if key != "preset"}
    resolved: dict[str, Any] = merge(preset_spec(options["preset"]), overrides)
    return resolved
