"""Plain values for one HTTP exchange, so dialects stay pure (no I/O) and testable."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from typing import Any

from jobservice_provider.core.errors import MalformedResponseError, body_excerpt


@dataclasses.dataclass(frozen=True)
class HttpRequest:
    """A request relative to the service's base URL; ``path`` is already escaped."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    # Whether repeating this exact request cannot create a second remote effect.
    idempotent: bool = True


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    """What came back: status, headers (lower-cased names) and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str = ""
    reason: str = ""

    def json(self) -> Any:
        """The body as JSON, or :class:`MalformedResponseError` quoting its start (decoded once)."""
        return self._decoded

    @functools.cached_property
    def _decoded(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise MalformedResponseError(
                f"{self.url or 'response'} returned HTTP {self.status} with a body that is not JSON: {body_excerpt(self.body)}",
                status=self.status,
            ) from exc

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise MalformedResponseError(
                f"{self.url or 'response'} returned JSON that is not an object: {body_excerpt(self.body)}",
                status=self.status,
            )
        return data
