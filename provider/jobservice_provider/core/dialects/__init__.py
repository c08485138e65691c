"""Dialects map the generic job operations onto one service's HTTP API (pure, no I/O)."""

from __future__ import annotations

from jobservice_provider.core.dialects.native import LogChunk, NativeDialect, Page

__all__ = ["LogChunk", "NativeDialect", "Page", "get_dialect"]


def get_dialect(name: str) -> NativeDialect:
    """The dialect registered under ``name``."""
    if name == "native":
        return NativeDialect()
    raise ValueError(f"unknown dialect {name!r}")
