"""The panel's ASGI app: routes of every feature, static files, security headers."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fluxon_fs.fs_master.panel.backend import PanelBackend
from fluxon_fs.fs_master.panel.routes import FEATURE_MODULES, auth, metrics
from fluxon_fs.fs_master.panel.settings import PanelSettings
from fluxon_fs.fs_master.panel.web import Panel, action_routes, view_routes

STATIC_DIR = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    # Scripts and styles come only from /static: no inline script can run even if markup were injected.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_panel_app(backend: PanelBackend, settings: PanelSettings) -> Starlette:
    """The panel for ``backend``; ``app.state.panel`` is the :class:`~fluxon_fs.fs_master.panel.web.Panel`."""
    panel = Panel(backend, settings)

    async def home(_request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=303)

    routes: list[BaseRoute] = [Route("/", home, methods=["GET"]), *auth.routes(panel), *metrics.routes(panel)]
    for module in FEATURE_MODULES:
        for view in module.VIEWS:
            routes += view_routes(panel, view)
        for action in module.ACTIONS:
            routes += action_routes(panel, action)
    routes.append(Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"))
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeadersMiddleware)])
    app.state.panel = panel
    return app
