"""A proxy that makes chosen jobs invisible for a while: as a service whose records are not yet
readable right after they are created (a replica behind, a queue not yet flushed).

A hidden id becomes visible ``seconds`` after the first request that asks for it (as if the job
were created that long after its watcher started). Until then it is 404 ``job-not-found`` on ``GET /v1/jobs/<id>`` (and
its sub-resources) and listed under ``missing`` by the batch lookup; everything else passes
through a :class:`FaultProxy` (so it is counted, and shaped in the shaped network mode).
"""

from __future__ import annotations

import json
import time

from aiohttp import web
from tests.support.fault_proxy import FaultProxy, route_of


class HidingProxy(FaultProxy):
    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.hidden: dict[str, float] = {}  # job id -> seconds it stays hidden after it is first asked for
        self.visible_at: dict[str, float] = {}  # job id -> monotonic time it becomes visible
        self.first_asked: dict[str, float] = {}  # job id -> monotonic time of the first request for it

    def hide(self, job_id: str, seconds: float) -> None:
        self.hidden[job_id] = seconds

    def _is_hidden(self, job_id: object) -> bool:
        if not isinstance(job_id, str) or job_id not in self.hidden:
            return False
        now = time.monotonic()
        self.first_asked.setdefault(job_id, now)
        visible_at = self.visible_at.setdefault(job_id, now + self.hidden[job_id])
        return now < visible_at

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts[:2] == ["v1", "jobs"] and len(parts) >= 3 and self._is_hidden(parts[2]):
            self.requests[route_of(request.method, request.path, request.query)] += 1
            problem = {"type": "job-not-found", "title": "Job not found", "status": 404, "detail": f"no job {parts[2]!r}"}
            return web.json_response(problem, status=404, content_type="application/problem+json")
        response = await super()._handle(request)
        if request.method == "GET" and parts == ["v1", "jobs"] and "id" in request.query and isinstance(response, web.Response):
            body = json.loads(response.body)  # type: ignore[arg-type]
            hidden = [job for job in body.get("jobs", []) if self._is_hidden(job.get("id"))]
            if hidden:
                body["jobs"] = [job for job in body["jobs"] if job not in hidden]
                body["missing"] = [*body.get("missing", []), *(job["id"] for job in hidden)]
                return web.json_response(body, status=response.status)
        return response
