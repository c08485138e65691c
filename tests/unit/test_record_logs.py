"""Logs kept as a list of records (issue 15, item 2): the declarative spec's records/line mode, and the client's paging."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from jobservice_provider.core.client import JobServiceClient
from jobservice_provider.core.config import ServiceConfig
from jobservice_provider.core.dialects import RecordLogs, get_dialect
from jobservice_provider.core.dialects.declarative import DeclarativeDialect, SpecError
from jobservice_provider.core.errors import MalformedResponseError, PermanentError
from jobservice_provider.core.http import HttpRequest, HttpResponse
from jobservice_provider.core.job import Job
from jobservice_provider.core.status import JobStatus

BASE = {
    "operations": {
        "submit": {"path": "/runs", "body": {"args": "{params}"}},
        "get": {"path": "/runs/{job_id}"},
        "logs": {
            "method": "POST",
            "path": "/logs/filter",
            "body": {"run": "{job_id}", "offset": "{offset}", "limit": "{limit}"},
            "records": "@",
            "line": "message",
            "page_size": 3,
        },
    },
    "record": {"id": "id", "status": "state"},
    "status_map": {"RUNNING": "RUNNING", "DONE": "SUCCEEDED"},
}


def spec(**logs: Any) -> dict[str, Any]:
    options = json.loads(json.dumps(BASE))
    for key, value in logs.items():
        if value is None:
            options["operations"]["logs"].pop(key, None)
        else:
            options["operations"]["logs"][key] = value
    return options


def answer(body: Any) -> HttpResponse:
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())


def test_a_record_log_pages_by_offset_and_limit_and_picks_each_records_line() -> None:
    dialect = DeclarativeDialect.from_options(spec())
    assert isinstance(dialect, RecordLogs) and dialect.log_page_size == 3 and dialect.log_settle_s == 2.0
    request = dialect.log_records("r/1", 6)
    assert (request.method, request.path, request.json) == ("POST", "/logs/filter", {"run": "r/1", "offset": 6, "limit": 3})
    records = [{"message": "one"}, {"message": 2}, {"message": None}, {"other": "x"}]
    assert dialect.parse_log_records(answer(records), 6).lines == ["one", "2", "", ""]
    with pytest.raises(MalformedResponseError, match=r"operations\.logs\.records gave no list"):
        dialect.parse_log_records(answer({"message": "one"}), 0)


def test_a_service_that_sends_every_record_is_sliced_at_the_offset() -> None:
    unpaged = spec(body=None, method="GET", path="/runs/{job_id}/logs", records="entries", line="join(' ', [level, text])")
    dialect = DeclarativeDialect.from_options(unpaged)
    entries = {"entries": [{"level": "INFO", "text": f"line {n}"} for n in range(5)]}
    assert dialect.parse_log_records(answer(entries), 3).lines == ["INFO line 3", "INFO line 4"]


def test_response_expressions_see_the_requests_offset_and_limit() -> None:
    """What the issue found missing: a response expression could not know which page it was reading."""
    sliced = spec(body=None, method="GET", path="/runs/{job_id}/logs", records="items[{offset}:]")
    dialect = DeclarativeDialect.from_options(sliced)
    items = {"items": [{"message": f"m{n}"} for n in range(6)]}
    assert dialect.parse_log_records(answer(items), 4).lines == ["m4", "m5"]  # sliced by the spec, not twice
    limited = DeclarativeDialect.from_options(spec(records="length(items) > `{limit}` && items[:{limit}] || items"))
    assert limited.parse_log_records(answer(items), 0).lines == ["m0", "m1", "m2"]


@pytest.mark.parametrize(
    ("logs", "message"),
    [
        ({"line": None}, "operations.logs.line: is required with records"),
        ({"text": "text"}, "operations.logs.text: give 'text' (a log as text) or 'records' (a list of records), not both"),
        ({"next_offset": "next", "complete": "eof"}, "operations.logs.next_offset: is for a log as text"),
        ({"page_size": 0}, "operations.logs.page_size: must be an integer from 1 to 10000, got 0"),
        ({"settle_s": -1}, "operations.logs.settle_s: must be a number of seconds from 0 to 300, got -1"),
        ({"records": "[{offset}:{job_id}]"}, "operations.logs.records: unknown placeholder {job_id}"),
        ({"records": "[{offset}:"}, "operations.logs.records: invalid JMESPath '[{offset}:'"),
        ({"records": "{a: b}[{offset}:]"}, "operations.logs.records: stray brace"),
        ({"body": {"run": "{job_id}", "limit": "{limit}"}}, "{limit} pages a log of records only together with {offset}"),
        ({"records": None, "line": None, "text": "text", "page_size": 5}, "operations.logs.page_size: is for a log of records"),
        (
            {"records": None, "line": None, "page_size": None, "text": "t[{offset}:]"},
            "operations.logs.text: {offset} and {limit} in",
        ),
        (
            {"body": {"run": "{job_id}", "after": "{cursor}"}},
            "operations.logs.next_cursor: a log of records paged by {cursor} needs",
        ),
        ({"next_cursor": "next"}, "operations.logs.query: next_cursor needs the request to send {cursor}"),
        (
            {"body": {"o": "{offset}", "c": "{cursor}", "r": "{job_id}"}, "next_cursor": "n"},
            "by {offset} or by {cursor}, not both",
        ),
        (
            {"records": None, "line": None, "page_size": None, "text": "t", "next_cursor": "n"},
            "next_cursor: is for a log of records",
        ),
    ],
)
def test_a_bad_record_log_spec_names_the_field(logs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        DeclarativeDialect.from_options(spec(**logs))


def test_settle_time_is_a_spec_setting_with_a_default() -> None:
    assert DeclarativeDialect.from_options(spec(settle_s=0)).log_settle_s == 0.0
    assert DeclarativeDialect.from_options(spec(settle_s=7.5)).log_settle_s == 7.5
    text_log = spec(records=None, line=None, page_size=None, text="text", body=None, method="GET", path="/runs/{job_id}/log")
    assert DeclarativeDialect.from_options(text_log).log_settle_s == 2.0  # every kind of log settles
    no_log = json.loads(json.dumps(BASE))
    del no_log["operations"]["logs"]
    assert DeclarativeDialect.from_options(no_log).log_settle_s == 0.0
    assert get_dialect("native").log_settle_s == 0.0


def test_a_missing_result_says_what_to_do() -> None:
    options = json.loads(json.dumps(BASE))
    options["operations"]["result"] = {
        "path": "/runs/{job_id}/artifacts",
        "result": "[0].data",
        "parse": "json",
        "missing": "publish one",
    }
    dialect = DeclarativeDialect.from_options(options)
    with pytest.raises(PermanentError, match=r"^Job r1 has no result: publish one$"):
        dialect.parse_result(answer([]), "r1")
    assert dialect.parse_result(answer([{"data": "[1]"}]), "r1") == [1]
    options["operations"]["result"]["missing"] = ""
    with pytest.raises(SpecError, match=r"operations\.result\.missing: must be a message"):
        DeclarativeDialect.from_options(options)


class RecordService:
    """The client's side of a record log, without a network: ``send`` and ``get_job`` answered from lists."""

    def __init__(self, records: list[str], status: str = "RUNNING") -> None:
        self.records, self.status = records, status
        self.requests: list[str] = []
        self.after_status: list[str] = []  # stored the moment the status is read (a record racing the end)

    def install(self, client: JobServiceClient) -> None:
        async def send(request: HttpRequest, *, job_id: str | None = None, timeout: float | None = None) -> HttpResponse:
            body = request.json
            self.requests.append(f"logs {body['offset']}+{body['limit']}")
            page = self.records[body["offset"] : body["offset"] + body["limit"]]
            return answer([{"message": m} for m in page])

        async def get_job(job_id: str) -> Job:
            self.requests.append("status")
            self.records.extend(self.after_status)
            self.after_status = []
            return Job(
                id=job_id,
                status=JobStatus(self.status) if self.status != "RUNNING" else JobStatus.RUNNING,
                raw_status=self.status,
            )

        client.send = send  # type: ignore[method-assign]
        client.get_job = get_job  # type: ignore[method-assign]


def record_client(service: RecordService) -> JobServiceClient:
    config = ServiceConfig.from_connection_fields(
        conn_id="rec", host="http://127.0.0.1:9", extra={"dialect": "declarative", "dialect_options": spec()}
    )
    client = JobServiceClient(config)
    service.install(client)
    return client


def test_complete_only_when_the_job_ended_and_a_page_comes_back_short() -> None:
    """The issue: 254 records, capped at 200 a request, gave 200 lines and complete=True."""
    service = RecordService([f"r{n}" for n in range(7)])
    client = record_client(service)

    async def read(offset: int) -> Any:
        return await client.get_logs("run-1", offset)

    full = asyncio.run(read(0))  # a full page: more may follow, no status needed
    assert (full.data, full.offset, full.next_offset, full.complete, full.records) == ("r0\nr1\nr2\n", 0, 3, False, True)
    assert service.requests == ["logs 0+3"]
    service.requests.clear()
    short = asyncio.run(read(6))  # caught up while the job runs: not complete
    assert (short.data, short.next_offset, short.complete) == ("r6\n", 7, False)
    assert service.requests == ["logs 6+3", "status"]
    service.requests.clear()
    service.status = "SUCCEEDED"
    service.after_status = ["r7"]  # stored just before the end: read again after the status, so it is not lost
    ended = asyncio.run(read(6))
    assert (ended.data, ended.next_offset, ended.complete) == ("r6\nr7\n", 8, True)
    assert service.requests == ["logs 6+3", "status", "logs 6+3"]
    service.requests.clear()
    service.records += ["r8", "r9", "r10"]  # an ended job whose page is full again: not complete yet
    assert asyncio.run(read(8)).complete is False and service.requests == ["logs 8+3"]
    service.requests.clear()
    # A wait that has just seen the status says so: no status lookup, no second read.
    assert asyncio.run(client.get_logs("run-1", 11, ended=True)).complete is True
    assert asyncio.run(client.get_logs("run-1", 11, ended=False)).complete is False
    assert service.requests == ["logs 11+3", "logs 11+3"]


CURSOR_SPEC = spec(
    body=None,
    method="GET",
    path="/runs/{job_id}/events",
    query={"after": "{cursor}", "size": "{limit}"},
    records="events",
    line="text",
    next_cursor="next",
)


class CursorService(RecordService):
    """Pages named by opaque cursors ("c<start>"); the last page has no next cursor, as with many APIs."""

    def install(self, client: JobServiceClient) -> None:
        super().install(client)

        async def send(request: HttpRequest, *, job_id: str | None = None, timeout: float | None = None) -> HttpResponse:
            query = dict(request.params)
            start = int(query["after"].removeprefix("c")) if "after" in query else 0
            size = int(query["size"])
            self.requests.append(f"page {query.get('after', 'first')}")
            page = self.records[start : start + size]
            following = start + len(page)
            body = {"events": [{"text": t} for t in page], "next": f"c{following}" if following < len(self.records) else None}
            return answer(body)

        client.send = send  # type: ignore[method-assign]


def cursor_client(service: RecordService) -> JobServiceClient:
    config = ServiceConfig.from_connection_fields(
        conn_id="cur", host="http://127.0.0.1:9", extra={"dialect": "declarative", "dialect_options": CURSOR_SPEC}
    )
    client = JobServiceClient(config)
    service.install(client)
    return client


def test_a_record_log_paged_by_cursor_reads_on_from_the_cursors_it_saw() -> None:
    dialect = DeclarativeDialect.from_options(CURSOR_SPEC)
    assert isinstance(dialect, RecordLogs) and dialect.log_cursor_paging
    assert dialect.log_records("r1", 0).params == (("size", "3"),)  # the first page: no cursor sent
    assert dialect.log_records("r1", 3, "c3").params == (("after", "c3"), ("size", "3"))

    service = CursorService([f"e{n}" for n in range(8)])
    client = cursor_client(service)

    async def read(offset: int, **kwargs: Any) -> Any:
        return await client.get_logs("run-7", offset, **kwargs)

    first = asyncio.run(read(0))
    assert (first.data, first.next_offset, first.complete) == ("e0\ne1\ne2\n", 3, False)
    second = asyncio.run(read(3))  # from the cursor the first page gave: no walk from the start
    assert (second.data, second.next_offset) == ("e3\ne4\ne5\n", 6)
    assert service.requests == ["page first", "page c3"]
    service.requests.clear()
    service.status = "SUCCEEDED"
    last = asyncio.run(read(7))  # inside the last page (no next cursor): caught up, the job ended
    assert (last.data, last.offset, last.next_offset, last.complete) == ("e7\n", 7, 8, True)
    assert service.requests == ["page c6", "status", "page c6"]

    # Another client (a hook makes one per call) in this process knows the cursors too.
    service.requests.clear()
    again = cursor_client(service)
    assert asyncio.run(again.get_logs("run-7", 4, ended=True)).data == "e4\ne5\n"
    assert service.requests == ["page c3"]
    # A job never read before is walked to from the first page.
    service.requests.clear()
    assert asyncio.run(again.get_logs("run-8", 7, ended=True)).data == "e7\n"
    assert service.requests == ["page first", "page c3", "page c6"]
