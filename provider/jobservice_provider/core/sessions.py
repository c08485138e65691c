"""One aiohttp session per service per event loop, shared by every wait in the process.

A triggerer runs hundreds of waits in one event loop; each opening its own session
(as HttpSensorTrigger does per poll) costs a TCP and TLS handshake per request.
Sessions are reference-counted and closed when the last user leaves.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

import aiohttp

from jobservice_provider import __version__
from jobservice_provider.core.config import ServiceConfig

USER_AGENT = f"airflow-provider-jobservice/{__version__}"
DEFAULT_CONNECTION_LIMIT = 32


def new_session(config: ServiceConfig, connection_limit: int = DEFAULT_CONNECTION_LIMIT) -> aiohttp.ClientSession:
    """A session with a bounded connection pool and TLS verification as configured."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connection_limit, ssl=bool(config.verify_tls)),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )


@dataclasses.dataclass
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


_sessions: dict[tuple[int, Hashable], _Shared] = {}


@asynccontextmanager
async def shared_session(config: ServiceConfig) -> AsyncIterator[aiohttp.ClientSession]:
    """The session of ``config``'s service in the running loop; closed after its last user."""
    key = (id(asyncio.get_running_loop()), (config.base_url, config.verify_tls))
    shared = _sessions.get(key)
    if shared is None or shared.session.closed:
        shared = _sessions[key] = _Shared(new_session(config))
    shared.users += 1
    try:
        yield shared.session
    finally:
        shared.users -= 1
        if shared.users == 0:
            del _sessions[key]
            await shared.session.close()
