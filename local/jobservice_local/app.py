"""The HTTP face (API v1) of the local job service, on aiohttp."""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import logging
import math
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from multidict import MultiMapping

from jobservice_local.guard import HostRule, check_request
from jobservice_local.models import JOB_PAGE_PATH, JsonLimitError, dumps, format_timestamp, loads, parse_timestamp
from jobservice_local.problems import (
    PROBLEM_CONTENT_TYPE,
    SLUG_BY_STATUS,
    Problem,
    invalid_request,
    job_not_found,
)
from jobservice_local.service import LocalJobService, Submission, parse_timeout
from jobservice_local.status import JobStatus

log = logging.getLogger(__name__)

SERVICE_NAME = "jobservice-local"
API_VERSION = "v1"
# Room for a job whose params carry a few MB (a sleep job's result, a python job's arguments);
# aiohttp's default of 1 MiB refused those. Bigger bodies still get the 413 problem answer.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_WAIT_S = 60.0
MAX_BATCH_IDS = 100
MAX_WATCH_IDS = 10_000
DEFAULT_PAGE = 100
MAX_PAGE = 1000
DEFAULT_LOG_CHUNK = 65536
MAX_LOG_CHUNK = 1024 * 1024
MAX_KEY_LENGTH = 255
#: aiohttp's limits (its defaults), answered 414 and 431.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
SUBMIT_FIELDS = ("type", "params", "meta", "timeout_s")
WATCH_FIELDS = ("seen", "wait_s")
LISTING_PARAMS = ("status", "type", "created_after", "limit", "cursor")
#: the query parameters each route accepts (any other one is a 400); routes not listed take none.
QUERY_PARAMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/v1/jobs"): ("id", *LISTING_PARAMS),
    ("GET", "/v1/jobs/{id}"): ("wait_s", "seen"),
    ("GET", "/v1/jobs/{id}/logs"): ("offset", "limit"),
}

SERVICE_KEY = web.AppKey("service", LocalJobService)
#: the routes a browser may open, without the token: pages that show nothing but their own URL.
PAGE_ROUTES = frozenset({"job-page"})


def _is_page(request: web.Request) -> bool:
    route = request.match_info.route
    return request.method == "GET" and route.name in PAGE_ROUTES


def service_version() -> str:
    """This distribution's version."""
    from jobservice_local import __version__

    return __version__


def problem_response(problem: Problem) -> web.Response:
    """Render a :class:`Problem` as ``application/problem+json``."""
    return web.json_response(problem.body(), status=problem.status, content_type=PROBLEM_CONTENT_TYPE, headers=problem.headers)


def _problem_from_http_error(request: web.Request, exc: web.HTTPException) -> Problem:
    status = exc.status
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
    if status == 404:
        detail = f"no such resource: {request.method} {request.path}"
    elif status == 405:
        allowed = exc.headers.get("Allow", "")
        detail = f"method {request.method} is not allowed on {request.path}; allowed: {allowed}"
    elif status == 413:
        detail = f"the request body exceeds {MAX_BODY_BYTES} bytes ({MAX_BODY_BYTES // (1024 * 1024)} MiB)"
    else:
        detail = exc.text or exc.reason
    return Problem(status, SLUG_BY_STATUS.get(status, f"http-{status}"), detail, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error, aiohttp's own included, into ``application/problem+json``."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(_problem_from_http_error(request, exc))
    except HttpProcessingError as exc:  # a body that breaks HTTP (bad chunking, short Content-Length)
        return problem_response(invalid_request(f"malformed HTTP request body: {_excerpt(exc.message)}"))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(Problem(500, "internal-error", "the job service failed to handle the request"))


def browser_guard_middleware(rule: HostRule) -> Middleware:
    """Refuse what only a web page would send (see :mod:`jobservice_local.guard`), before auth."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        page = _is_page(request)  # opened by a click in another site's page (Airflow's): only Host is checked
        refusal = check_request(
            rule,
            host=headers.get(hdrs.HOST),
            origin=None if page else headers.get(hdrs.ORIGIN),
            fetch_site=None if page else headers.get("Sec-Fetch-Site"),
            content_type=headers.get(hdrs.CONTENT_TYPE),
            has_body=request.body_exists,
        )
        if refusal is not None:
            raise Problem(refusal.status, refusal.rule, refusal.detail)
        return await handler(request)

    return guard


_REQUEST_LINE = re.compile(rb"^[A-Z]+ \S")


def _excerpt(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def protocol_problem(status: int, exc: BaseException | None, message: str | None) -> Problem:
    """The problem for a request aiohttp refused before any handler ran (or a failure outside them)."""
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        # aiohttp says which line only this way: its C parser reads the target into a bytearray, its
        # Python parser quotes the request line, method first.
        if isinstance(line, bytearray) or (isinstance(line, bytes) and _REQUEST_LINE.match(line)):
            return Problem(
                414,
                "uri-too-long",
                f"the request line (method, path and query) exceeds {MAX_LINE_BYTES} bytes",
                limit="max_line_bytes",
                max_line_bytes=MAX_LINE_BYTES,
            )
        return Problem(
            431,
            "header-fields-too-large",
            f"a request header exceeds {MAX_FIELD_BYTES} bytes (name and value)",
            limit="max_field_bytes",
            max_field_bytes=MAX_FIELD_BYTES,
        )
    if isinstance(exc, BadHttpMessage) and "too many headers" in str(exc.message).lower():
        return Problem(431, "header-fields-too-large", "the request has too many header fields", limit="max_headers")
    if status >= 500:
        return Problem(500, "internal-error", "the job service failed to handle the request")
    detail = getattr(exc, "message", None) or message or "malformed HTTP request"
    return Problem(status, SLUG_BY_STATUS.get(status, "invalid-request"), f"malformed HTTP request: {_excerpt(str(detail))}")


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering what it refuses itself as problem+json instead of plain text."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; raises if an answer is under way
        response = problem_response(protocol_problem(status, exc, message))
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections answer even a malformed request with problem+json."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer
        return server


def auth_middleware(
    token: str | None, scheme: str = "bearer", basic_user: str | None = None, header: str | None = None
) -> Middleware:
    """Require the token on every request (``None``: no auth).

    :param scheme: ``bearer`` (``Authorization: Bearer <token>``, the API's own), or for tests of
        clients' auth settings ``basic`` (``Authorization: Basic``, ``basic_user`` and the token as
        password) or ``header`` (the token as the value of the header ``header``).
    """
    expected = token.encode("utf-8") if token is not None else None
    if expected is not None and scheme == "basic":
        assert basic_user is not None
        return _pages_open(_basic_auth(basic_user.encode("utf-8") + b":" + expected))
    if expected is not None and scheme == "header":
        assert header is not None
        return _pages_open(_header_auth(header, expected))

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None:
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is None:
            raise _unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'", None)
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'", "invalid_request")
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected):
            raise _unauthorized("wrong bearer token", "invalid_token")
        return await handler(request)

    return _pages_open(check_token)


def _pages_open(check: Middleware) -> Middleware:
    """``check`` on every request but a page's (a browser cannot send the token; pages show nothing)."""

    @web.middleware
    async def open_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_page(request):
            return await handler(request)
        return await check(request, handler)

    return open_pages


def _basic_auth(expected: bytes) -> Middleware:
    challenge = {"WWW-Authenticate": 'Basic realm="jobservice-local", charset="UTF-8"'}

    @web.middleware
    async def check_basic(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        scheme, _, encoded = (header or "").partition(" ")
        if header is None or scheme.lower() != "basic":
            raise Problem(401, "unauthorized", "this service takes 'Authorization: Basic <user:token>'", headers=challenge)
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise Problem(401, "unauthorized", "the Basic credentials are not valid base64", headers=challenge) from None
        if not hmac.compare_digest(given, expected):
            raise Problem(401, "unauthorized", "wrong user or token", headers=challenge)
        return await handler(request)

    return check_basic


def _header_auth(name: str, expected: bytes) -> Middleware:
    challenge = {"WWW-Authenticate": f'ApiKey realm="jobservice-local", header="{name}"'}

    @web.middleware
    async def check_header(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(name)
        if given is None:
            raise Problem(401, "unauthorized", f"missing {name} header; send the token in it", headers=challenge)
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected):
            raise Problem(401, "unauthorized", f"wrong token in {name}", headers=challenge)
        return await handler(request)

    return check_header


def _unauthorized(detail: str, error: str | None) -> Problem:
    challenge = 'Bearer realm="jobservice-local"'
    if error is not None:
        challenge += f', error="{error}"'
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


# ---------------------------------------------------------------------- query parsing


def _check_query(request: web.Request) -> None:
    route = request.match_info.route
    allowed = QUERY_PARAMS.get((request.method, route.resource.canonical if route.resource else ""), ())
    for name in request.query:
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            raise invalid_request(f"unknown query parameter {name!r}; expected: {expected}", param=name)


def _single(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise invalid_request(f"query parameter {name!r} given more than once", param=name)
    return values[0] if values else None


def _int_param(query: MultiMapping[str], name: str, default: int, low: int, high: int | None) -> int:
    raw = _single(query, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise invalid_request(f"query parameter {name!r} must be an integer {bounds}, got {raw!r}", param=name)
    return value


def _multi(query: MultiMapping[str], name: str) -> list[str]:
    """A repeatable parameter; each value may also be a comma-separated list."""
    values = [part.strip() for raw in query.getall(name, []) for part in raw.split(",")]
    if any(not value for value in values):
        raise invalid_request(f"query parameter {name!r} has an empty value", param=name)
    return values


# ---------------------------------------------------------------------- handlers


def _service(request: web.Request) -> LocalJobService:
    return request.app[SERVICE_KEY]


def _job_id(request: web.Request) -> str:
    return request.match_info["id"]


def _optional_object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_request(f"field {name!r} must be an object", field=name)
    return value


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise invalid_request(
            f"header 'Idempotency-Key' must be 1 to {MAX_KEY_LENGTH} printable characters", header="Idempotency-Key"
        )
    return key


async def _json_object_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = loads(raw.decode("utf-8"))
    except JsonLimitError as exc:
        raise invalid_request(
            f"the request body is beyond a limit of this service: {exc}", limit=exc.limit, **{exc.limit: exc.value}
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid_request("the request body must be a JSON object")
    return body


def _json_kind(value: Any) -> str:
    """What a JSON value is, for error messages (never the value itself, which may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


async def submit_job(request: web.Request) -> web.Response:
    """``POST /v1/jobs``."""
    _check_query(request)
    key = _idempotency_key(request)
    body = await _json_object_body(request)
    unknown = sorted(set(body) - set(SUBMIT_FIELDS))
    if unknown:
        raise invalid_request(f"unknown field {unknown[0]!r}; allowed fields: {', '.join(SUBMIT_FIELDS)}", field=unknown[0])
    job_type = body.get("type")
    if not isinstance(job_type, str) or not job_type:
        raise invalid_request("field 'type' is required and must be a non-empty string", field="type")
    submission = Submission(
        type=job_type,
        params=_optional_object(body, "params"),
        meta=_optional_object(body, "meta"),
        timeout_s=parse_timeout(body.get("timeout_s")),
    )
    job, created = await _service(request).submit(submission, key)
    return web.json_response(job.record(), status=201 if created else 200, headers={"Location": f"/v1/jobs/{job.id}"})


def _wait_s(query: MultiMapping[str]) -> float:
    """The long-poll time ``wait_s`` (0 when absent)."""
    raw_wait = _single(query, "wait_s")
    if raw_wait is None:
        return 0.0
    try:
        wait_s = float(raw_wait)
    except ValueError:
        wait_s = math.nan
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise invalid_request(
            f"query parameter 'wait_s' must be a number from 0 to {MAX_WAIT_S:g}, got {raw_wait!r}",
            param="wait_s",
        )
    return wait_s


async def get_job(request: web.Request) -> web.Response:
    """``GET /v1/jobs/{id}`` with optional long-poll."""
    query = request.query
    _check_query(request)
    wait_s = _wait_s(query)
    seen = None
    if "seen" in query:
        seen = _int_param(query, "seen", 0, 0, None)
    job = await _service(request).wait_for_change(_job_id(request), seen, wait_s)
    if job is None:
        raise job_not_found(_job_id(request))
    return web.json_response(job.record())


async def find_jobs(request: web.Request) -> web.Response:
    """``GET /v1/jobs``: batch lookup by ``id`` or a filtered, paginated listing."""
    query = request.query
    _check_query(request)
    service = _service(request)
    if "id" in query:
        mixed = [name for name in LISTING_PARAMS if name in query]
        if mixed:
            raise invalid_request(
                f"query parameter 'id' cannot be combined with listing parameters ({', '.join(mixed)})",
                param=mixed[0],
            )
        ids = list(dict.fromkeys(query.getall("id")))
        if any(not job_id for job_id in ids):
            raise invalid_request("query parameter 'id' has an empty value", param="id")
        if len(ids) > MAX_BATCH_IDS:
            raise Problem(
                400,
                "too-many-ids",
                f"at most {MAX_BATCH_IDS} ids per batch lookup, got {len(ids)}",
                max_ids=MAX_BATCH_IDS,
            )
        jobs, missing = service.get_many(ids)
        return web.json_response({"jobs": [job.record() for job in jobs], "missing": missing})

    statuses: list[JobStatus] = []
    for value in _multi(query, "status"):
        try:
            statuses.append(JobStatus(value.upper()))
        except ValueError:
            known = ", ".join(status.value for status in JobStatus)
            raise invalid_request(f"unknown status {value!r}; expected one of {known}", param="status") from None
    created_after = None
    raw_after = _single(query, "created_after")
    if raw_after is not None:
        try:
            created_after = format_timestamp(parse_timestamp(raw_after))
        except ValueError:
            raise invalid_request(
                f"query parameter 'created_after' must be an RFC 3339 timestamp with offset, got {raw_after!r}",
                param="created_after",
            ) from None
    jobs, next_cursor = service.list_jobs(
        statuses=statuses,
        types=_multi(query, "type"),
        created_after=created_after,
        cursor=_single(query, "cursor"),
        limit=_int_param(query, "limit", DEFAULT_PAGE, 1, MAX_PAGE),
    )
    return web.json_response({"jobs": [job.record() for job in jobs], "next_cursor": next_cursor})


def _watched_versions(body: dict[str, Any]) -> dict[str, int]:
    """The ``seen`` member of a watch: job id -> the version the caller has."""
    if "seen" not in body:
        raise invalid_request("field 'seen' is required: an object mapping job ids to the versions you have", param="seen")
    seen = body["seen"]
    if not isinstance(seen, dict):
        raise invalid_request(f"field 'seen' must be an object mapping job ids to versions, got {_json_kind(seen)}", param="seen")
    if not seen:
        raise invalid_request("field 'seen' must list at least one job id", param="seen")
    if len(seen) > MAX_WATCH_IDS:
        raise Problem(
            400,
            "too-many-ids",
            f"at most {MAX_WATCH_IDS} ids per watch, got {len(seen)}",
            max_ids=MAX_WATCH_IDS,
        )
    for job_id, version in seen.items():
        if not job_id:
            raise invalid_request("field 'seen' has an empty job id", param="seen")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise invalid_request(
                f"field 'seen' must map each job id to an integer version >= 0; {job_id!r} has {_json_kind(version)}",
                param="seen",
            )
    return seen


def _watch_wait_s(body: dict[str, Any]) -> float:
    """The ``wait_s`` member of a watch (0 when absent), bounded like the long-poll's query parameter."""
    wait_s = body.get("wait_s", 0)
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or not 0 <= wait_s <= MAX_WAIT_S:
        raise invalid_request(
            f"field 'wait_s' must be a number from 0 to {MAX_WAIT_S:g}, got {_json_kind(wait_s)}",
            param="wait_s",
        )
    return float(wait_s)


async def watch_jobs(request: web.Request) -> web.Response:
    """``POST /v1/watch``: the listed jobs that changed since the versions the caller has, once any did."""
    _check_query(request)
    body = await _json_object_body(request)
    unknown = sorted(set(body) - set(WATCH_FIELDS))
    if unknown:
        raise invalid_request(f"unknown field {unknown[0]!r}; allowed fields: {', '.join(WATCH_FIELDS)}", param=unknown[0])
    seen = _watched_versions(body)
    wait_s = _watch_wait_s(body)
    jobs, missing = await _service(request).watch(seen, wait_s)
    return web.json_response({"jobs": [job.record() for job in jobs], "missing": missing})


async def cancel_job(request: web.Request) -> web.Response:
    """``POST /v1/jobs/{id}/cancel``."""
    _check_query(request)
    job = _service(request).cancel(_job_id(request))
    if job is None:
        raise job_not_found(_job_id(request))
    return web.json_response(job.record())


async def get_result(request: web.Request) -> web.Response:
    """``GET /v1/jobs/{id}/result``."""
    _check_query(request)
    job_id = _job_id(request)
    result = _service(request).result_json(job_id)
    # The result is stored as JSON text already; splice it in instead of re-parsing.
    return web.Response(text=f'{{"job_id":{dumps(job_id)},"result":{result}}}', content_type="application/json")


async def get_logs(request: web.Request) -> web.Response:
    """``GET /v1/jobs/{id}/logs``."""
    query = request.query
    _check_query(request)
    offset = _int_param(query, "offset", 0, 0, None)
    limit = _int_param(query, "limit", DEFAULT_LOG_CHUNK, 1, MAX_LOG_CHUNK)
    service = _service(request)
    job = service.get(_job_id(request))
    if job is None:
        raise job_not_found(_job_id(request))
    return web.json_response(service.read_log(job, offset, limit))


async def job_page(request: web.Request) -> web.Response:
    """``GET /ui/jobs/{id}``: where a job's ``links.web`` points (the extra link in Airflow).

    This service has no web UI and a browser has no token, so the page shows nothing about the
    job (not even whether it exists): only where to read it. It reads no data at all.
    """
    _check_query(request)
    job_id = html.escape(request.match_info["id"])
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Job {job_id} · {SERVICE_NAME}</title></head><body>"
        f"<h1>Job {job_id}</h1>"
        f"<p>{SERVICE_NAME} is a development job service without a web UI. Read this job with "
        f"<code>GET /v1/jobs/{job_id}</code> and the service's token; the Airflow task log shows its progress.</p>"
        "</body></html>"
    )
    headers = {
        "Content-Security-Policy": "default-src 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    return web.Response(text=body, content_type="text/html", headers=headers)


async def health(request: web.Request) -> web.Response:
    """``GET /v1/health``."""
    _check_query(request)
    return web.json_response(
        {
            "status": "ok",
            "service": SERVICE_NAME,
            "version": service_version(),
            "api": API_VERSION,
            "jobs": _service(request).health(),
        }
    )


# ---------------------------------------------------------------------- application


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE_KEY]
    await service.start()
    yield
    await service.close()


async def _on_shutdown(app: web.Application) -> None:
    app[SERVICE_KEY].begin_shutdown()


def build_app(service: LocalJobService) -> web.Application:
    """The aiohttp application for ``service`` (started and stopped with the app)."""
    app = web.Application(
        middlewares=[
            problem_middleware,
            browser_guard_middleware(HostRule.for_listen_address(service.config.listen_host, service.config.allowed_hosts)),
            auth_middleware(
                service.config.token, service.config.auth_scheme, service.config.basic_user, service.config.auth_header
            ),
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[SERVICE_KEY] = service
    app.cleanup_ctx.append(_lifespan)
    app.on_shutdown.append(_on_shutdown)
    router = app.router
    router.add_post("/v1/jobs", submit_job)
    router.add_get("/v1/jobs", find_jobs, allow_head=False)
    router.add_get("/v1/jobs/{id}", get_job, allow_head=False)
    router.add_post("/v1/jobs/{id}/cancel", cancel_job)
    router.add_get("/v1/jobs/{id}/result", get_result, allow_head=False)
    router.add_get("/v1/jobs/{id}/logs", get_logs, allow_head=False)
    router.add_post("/v1/watch", watch_jobs)
    router.add_get("/v1/health", health, allow_head=False)
    router.add_get(JOB_PAGE_PATH, job_page, allow_head=False, name="job-page")
    return app
