"""``jobservice-local``: the command line of the embedded local job service."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from jobservice_local.app import build_app
from jobservice_local.service import LocalConfig, LocalJobService
from jobservice_local.store import StoreLockedError

log = logging.getLogger("jobservice_local")

TOKEN_ENV = "JOBSERVICE_TOKEN"
DEFAULT_DB = "./jobservice-local.db"
SHUTDOWN_TIMEOUT = 5.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be from 0 to 65535")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number of seconds >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jobservice-local``."""
    parser = argparse.ArgumentParser(
        prog="jobservice-local",
        description="The local job service of airflow-provider-jobservice (API v1) (development and tests).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the job service (HTTP API v1)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the Host header may give (repeatable); by default only the --host address and localhost",
    )
    serve.add_argument("--port", type=_port, default=8765, help="port to listen on; 0 picks a free one (default: 8765)")
    serve.add_argument("--db", default=DEFAULT_DB, help=f"SQLite database file (default: {DEFAULT_DB})")
    auth = serve.add_mutually_exclusive_group()
    auth.add_argument(
        "--token",
        help=f"bearer token clients must send (default: ${TOKEN_ENV}, else a generated one printed to stderr)",
    )
    auth.add_argument("--no-auth", action="store_true", help="accept requests without a token (loopback hosts only)")
    serve.add_argument("--allow-python", action="store_true", help="enable the 'python' job type")
    serve.add_argument("--allow-command", action="store_true", help="enable the 'command' job type")
    serve.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=10_000,
        help="at most this many jobs run at once; the rest wait QUEUED (default: 10000)",
    )
    serve.add_argument(
        "--cancel-grace",
        type=_seconds,
        default=5.0,
        help="seconds between SIGTERM and SIGKILL when stopping a job's process (default: 5)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level of the service's own log on stderr (default: info)",
    )
    return parser


def is_loopback(host: str) -> bool:
    """Whether ``host`` only ever means this machine."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _resolve_token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    if args.no_auth:
        return None
    if args.token is not None:
        if not args.token:
            parser.error("--token must not be empty")
        return str(args.token)
    from_env = os.environ.get(TOKEN_ENV)
    if from_env:
        return from_env
    token = secrets.token_urlsafe(32)
    print(f"jobservice-local: generated token: {token}", file=sys.stderr, flush=True)
    return token


def _bind(host: str, port: int) -> socket.socket:
    """One listening socket, so that ``--port 0`` yields exactly one port."""
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    name = host.strip("[]")
    return f"[{name}]" if ":" in name else name


async def serve(config: LocalConfig, host: str, port: int) -> int:
    """Run the service until SIGTERM/SIGINT; return the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Bind first: a busy port must not start (and then abandon) the queued jobs.
    try:
        sock = _bind(host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc)
        return 1
    service = LocalJobService(config)
    runner = web.AppRunner(build_app(service), handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    try:
        await runner.setup()
    except (StoreLockedError, sqlite3.Error, OSError) as exc:
        log.error("cannot open the job database %s: %s", config.db_path, exc)
        service.store.close()
        sock.close()
        return 1
    site = web.SockSite(runner, sock)
    await site.start()
    bound_port = sock.getsockname()[1]
    print(f"jobservice-local listening on http://{_url_host(host)}:{bound_port}", flush=True)
    log.info(
        "database %s; job types: %s; max concurrency %d; auth %s",
        config.db_path,
        ", ".join(sorted(config.enabled_types)),
        config.max_concurrency,
        "on" if config.token is not None else "OFF",
    )
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobservice-local`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.no_auth and (args.allow_python or args.allow_command):
        flags = " and ".join(
            flag for flag, on in (("--allow-python", args.allow_python), ("--allow-command", args.allow_command)) if on
        )
        parser.error(
            f"refusing --no-auth with {flags}: those job types run arbitrary code, and without a token anyone who can "
            "reach the port could run it as you; give a token instead (--token-file FILE or JOBSERVICE_TOKEN)"
        )
    if args.no_auth and not is_loopback(args.host):
        parser.error(
            f"refusing to serve without authentication on non-loopback host {args.host!r}; "
            "use --token (or JOBSERVICE_TOKEN) or listen on 127.0.0.1"
        )
    token = _resolve_token(args, parser)
    if not is_loopback(args.host):
        log.warning("listening on %s: this is a development service, not meant for untrusted networks", args.host)
    config = LocalConfig(
        db_path=Path(args.db).expanduser().absolute(),
        token=token,
        allow_python=args.allow_python,
        allow_command=args.allow_command,
        max_concurrency=args.max_concurrency,
        cancel_grace=args.cancel_grace,
        listen_host=args.host,
        allowed_hosts=tuple(args.allowed_host),
    )
    try:
        return asyncio.run(serve(config, args.host, args.port))
    except KeyboardInterrupt:
        return 0
