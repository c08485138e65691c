"""The embedded local job service as a test fixture helper."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.support.shaping_proxy import ShapingProxy, network_is_shaped

from jobservice_local.testing import LocalServiceError, LocalServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["REPO_ROOT", "LocalService", "LocalServiceError"]


class LocalService(LocalServiceProcess):
    """A local service whose ``python`` jobs can import test code (``tests.support.pyjobs:…``).

    In the shaped network mode (``JOBSERVICE_TEST_NETWORK=shaped``) it is reached through its own
    :class:`ShapingProxy`: ``base_url`` (and so ``url()``) is the proxy's, ``direct_url`` the
    service's. The proxy stops and starts with the service, on the same port, so a client of a
    stopped service meets a refused connection as it would without the proxy, and a restart keeps
    every URL handed out valid.
    """

    def __init__(self, workdir: Path, token: str | None = "test-token", extra_args: Sequence[str] = ()) -> None:
        super().__init__(workdir, token=token, extra_args=extra_args, pythonpath=[REPO_ROOT])
        self.shaper: ShapingProxy | None = None
        self._shaped = network_is_shaped()

    @property
    def direct_url(self) -> str:
        """The service's own ``http://127.0.0.1:<port>``, bypassing any shaping proxy."""
        return super().base_url

    @property
    def base_url(self) -> str:
        return self.shaper.url if self.shaper is not None else self.direct_url

    def start(self) -> LocalService:
        super().start()
        if not self._shaped:
            return self
        assert self.port is not None
        try:
            if self.shaper is None:
                self.shaper = ShapingProxy("127.0.0.1", self.port)
            else:
                self.shaper.retarget("127.0.0.1", self.port)
            self.shaper.start()
        except BaseException:
            super().stop()
            raise
        return self

    def stop(self) -> int | None:
        if self.shaper is not None:
            self.shaper.stop()
        return super().stop()

    def __enter__(self) -> LocalService:
        return self.start()
