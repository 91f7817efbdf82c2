"""``/metrics``: the fs master's Prometheus text exposition."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.fs_master.panel.web import NOT_LOGGED_IN_MESSAGE, Panel, unauthorized

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def routes(panel: Panel) -> list[BaseRoute]:
    """``GET /metrics``: public unless ``metrics_requires_login`` (then a session or bearer token)."""

    async def metrics(request: Request) -> Response:
        if panel.settings.metrics_requires_login:
            try:
                user, _ = await run_in_threadpool(panel.resolve_user, request)
            except PermissionDeniedError as exc:
                return unauthorized(exc.message)
            if user is None:
                return unauthorized(NOT_LOGGED_IN_MESSAGE)
        text = await run_in_threadpool(panel.backend.metrics_text)
        return PlainTextResponse(text, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

    return [Route("/metrics", metrics, methods=["GET"])]
