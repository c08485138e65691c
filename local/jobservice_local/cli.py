"""``jobservice-local``: the command line of the embedded local job service."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import secrets
import signal
import socket
import sqlite3
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from jobservice_local.app import MAX_FIELD_BYTES, MAX_LINE_BYTES, ProblemAppRunner, build_app
from jobservice_local.service import LocalConfig, LocalJobService
from jobservice_local.store import StoreLockedError

log = logging.getLogger("jobservice_local")

TOKEN_ENV = "JOBSERVICE_TOKEN"
TOKEN_FD_OPTION = "--token-fd"
AUTH_SCHEMES = ("bearer", "basic", "header")
DEFAULT_AUTH_HEADER = "X-API-Key"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MAX_TOKEN_LENGTH = 4096
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
        "--token-file",
        metavar="FILE",
        help=f"read the bearer token clients must send from FILE (first line); else ${TOKEN_ENV}, "
        "else a generated one printed to stderr",
    )
    auth.add_argument(
        "--token",
        metavar="TOKEN",
        help="the bearer token itself (discouraged: every local user sees it in ps; use --token-file or $JOBSERVICE_TOKEN)",
    )
    auth.add_argument(
        "--no-auth",
        action="store_true",
        help="accept requests without a token (loopback hosts only; not with --allow-python or --allow-command)",
    )
    serve.add_argument(
        "--auth-scheme",
        choices=AUTH_SCHEMES,
        default="bearer",
        help="how clients send the token: bearer (the API's own, default), or, to test clients' auth settings, "
        "basic (Authorization: Basic with --basic-user and the token as password) or header (the token in --auth-header)",
    )
    serve.add_argument("--basic-user", metavar="NAME", help="with --auth-scheme basic: the user name")
    serve.add_argument("--auth-header", metavar="NAME", help="with --auth-scheme header: the header name (default X-API-Key)")
    # The token handed over by the re-exec that clears it from the environment (see main()).
    serve.add_argument(TOKEN_FD_OPTION, type=int, help=argparse.SUPPRESS)
    serve.add_argument(
        "--allow-python",
        action="store_true",
        help="enable the 'python' job type: runs arbitrary code (any module:function, os:system included) "
        "as this user for anyone holding the token",
    )
    serve.add_argument(
        "--allow-command",
        action="store_true",
        help="enable the 'command' job type: runs arbitrary programs as this user for anyone holding the token",
    )
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


def _check_auth_scheme(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.basic_user is not None and args.auth_scheme != "basic":
        parser.error("--basic-user is only used with --auth-scheme basic")
    if args.auth_header is not None and args.auth_scheme != "header":
        parser.error("--auth-header is only used with --auth-scheme header")
    if args.auth_scheme != "bearer" and args.no_auth:
        parser.error(f"--auth-scheme {args.auth_scheme} needs a token; it cannot be combined with --no-auth")
    if args.auth_scheme == "basic":
        if not args.basic_user:
            parser.error("--auth-scheme basic needs --basic-user NAME")
        if ":" in args.basic_user or not args.basic_user.isprintable():
            parser.error("--basic-user must not contain ':' or control characters")
    if args.auth_scheme == "header":
        args.auth_header = args.auth_header or DEFAULT_AUTH_HEADER
        if not _HEADER_NAME.match(args.auth_header) or args.auth_header.lower() in ("host", "origin", "content-type"):
            parser.error(f"--auth-header must be a header name such as {DEFAULT_AUTH_HEADER}, got {args.auth_header!r}")


def _checked_token(token: str, source: str, parser: argparse.ArgumentParser) -> str:
    if not token:
        parser.error(f"{source} holds an empty token")
    if len(token) > MAX_TOKEN_LENGTH or not token.isprintable() or any(c.isspace() for c in token):
        parser.error(f"{source} must hold one line of at most {MAX_TOKEN_LENGTH} printable characters without spaces")
    return token


def _read_token_file(path: str, parser: argparse.ArgumentParser) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read(MAX_TOKEN_LENGTH + 2)
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"cannot read --token-file {path}: {exc}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(
            f"jobservice-local: warning: --token-file {path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
            f"chmod 600 {path}",
            file=sys.stderr,
            flush=True,
        )
    return _checked_token(text.splitlines()[0] if text.strip() else "", f"--token-file {path}", parser)


def _read_token_fd(fd: int, parser: argparse.ArgumentParser) -> str:
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_TOKEN_LENGTH + 1)
    except OSError as exc:
        parser.error(f"cannot read the token handed over on descriptor {fd}: {exc}")
    return _checked_token(data.decode("utf-8", "replace"), f"${TOKEN_ENV}", parser)


def _resolve_token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    if args.no_auth:
        return None
    if args.token_file is not None:
        return _read_token_file(args.token_file, parser)
    if args.token is not None:
        print(
            "jobservice-local: warning: --token puts the token in this process's command line, where every local user "
            "can read it (ps); use --token-file FILE or $JOBSERVICE_TOKEN",
            file=sys.stderr,
            flush=True,
        )
        return _checked_token(str(args.token), "--token", parser)
    if args.token_fd is not None:
        return _read_token_fd(args.token_fd, parser)
    from_env = os.environ.pop(TOKEN_ENV, None)
    if from_env:
        return _checked_token(from_env, f"${TOKEN_ENV}", parser)
    token = secrets.token_urlsafe(32)
    print(f"jobservice-local: generated token: {token}", file=sys.stderr, flush=True)
    return token


def exposure_warning(host: str, allow_python: bool, allow_command: bool) -> str:
    """What listening on a non-loopback ``host`` exposes, said plainly."""
    code = [flag for flag, on in (("--allow-python", allow_python), ("--allow-command", allow_command)) if on]
    runs = (
        f", and run arbitrary code as {_user()} on this machine ({' and '.join(code)})"
        if code
        else " (no code: python and command jobs are off)"
    )
    return (
        f"jobservice-local: WARNING: --host {host} is not a loopback address. Every machine that can reach it can "
        f"use the job API: submit and cancel jobs, read every job's params, results and logs{runs}. Only the token "
        "guards it, and it travels in clear text (plain HTTP, no TLS). This is a development service: keep it on "
        "127.0.0.1 unless you mean this."
    )


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        return "this user"


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
    runner = ProblemAppRunner(
        build_app(service),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_FIELD_BYTES,
    )
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


def _reexec_without_token_in_environment(argv: Sequence[str]) -> None:
    """Start this program again with ``$JOBSERVICE_TOKEN`` moved from the environment to a pipe.

    A process's initial environment stays readable in ``/proc/<pid>/environ`` (and ``ps e``)
    for its whole life, by every process of the same user: the jobs included, which could then
    read the token. Removing it from ``os.environ`` does not change that; an ``exec`` with a new
    environment does. Never returns.
    """
    token = os.environ[TOKEN_ENV].encode("utf-8")
    read_end, write_end = os.pipe()
    if len(token) > MAX_TOKEN_LENGTH:  # more would not fit the pipe before anyone reads it
        token = token[: MAX_TOKEN_LENGTH + 1]
    os.write(write_end, token)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {name: value for name, value in os.environ.items() if name != TOKEN_ENV}
    os.execve(sys.executable, [sys.executable, "-m", "jobservice_local", *argv, TOKEN_FD_OPTION, str(read_end)], env)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobservice-local`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    token_given = args.no_auth or args.token is not None or args.token_file is not None or args.token_fd is not None
    if argv is None and os.environ.get(TOKEN_ENV) and not token_given and os.name == "posix":
        _reexec_without_token_in_environment(sys.argv[1:])
    os.environ.pop(TOKEN_ENV, None)
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
            "give a token (--token-file FILE or JOBSERVICE_TOKEN) or listen on 127.0.0.1"
        )
    _check_auth_scheme(args, parser)
    token = _resolve_token(args, parser)
    if not is_loopback(args.host):
        print(exposure_warning(args.host, args.allow_python, args.allow_command), file=sys.stderr, flush=True)
    config = LocalConfig(
        db_path=Path(args.db).expanduser().absolute(),
        token=token,
        allow_python=args.allow_python,
        allow_command=args.allow_command,
        max_concurrency=args.max_concurrency,
        cancel_grace=args.cancel_grace,
        listen_host=args.host,
        allowed_hosts=tuple(args.allowed_host),
        auth_scheme=args.auth_scheme,
        basic_user=args.basic_user,
        auth_header=args.auth_header,
    )
    try:
        return asyncio.run(serve(config, args.host, args.port))
    except KeyboardInterrupt:
        return 0
