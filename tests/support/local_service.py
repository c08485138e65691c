"""The embedded local job service as a test fixture helper."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jobservice_provider.local.process import LocalServiceError, LocalServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["REPO_ROOT", "LocalService", "LocalServiceError"]


class LocalService(LocalServiceProcess):
    """A local service whose ``python`` jobs can import test code (``tests.support.pyjobs:…``)."""

    def __init__(self, workdir: Path, token: str | None = "test-token", extra_args: Sequence[str] = ()) -> None:
        super().__init__(workdir, token=token, extra_args=extra_args, pythonpath=[REPO_ROOT])
