"""Login and logout: the password is checked once, then the session carries an access token."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.fs_master.panel.login_sessions import PanelSession
from fluxon_fs.fs_master.panel.web import (
    CSRF_FIELD,
    Panel,
    csrf_token_ok,
    is_local_path,
    read_body_params,
    unauthorized,
)

WRONG_LOGIN_MESSAGE = "Wrong username or password."
STALE_FORM_MESSAGE = "This login form expired or did not come from this panel; please try again."
TOKEN_ACCEPT_TIMEOUT_S = 10.0
_TOKEN_ACCEPT_POLL_S = 0.05


def accepted_token(authorizer: Authorizer, username: str, password: str) -> str:
    """Log in and return a token the authorizer already accepts.

    Right after a password change the authorizer may still hold the user's previous credential
    version for up to its revocation bound and refuse the brand-new token; waiting here (bounded)
    keeps the next page from bouncing the user back to the login form.
    """
    token = authorizer.login(username, password)
    deadline = time.monotonic() + TOKEN_ACCEPT_TIMEOUT_S
    while True:
        try:
            authorizer.authenticate(token)
            return token
        except PermissionDeniedError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(_TOKEN_ACCEPT_POLL_S)


def _next_url(value: Any) -> str:
    return value if isinstance(value, str) and is_local_path(value) else "/ui/"


def routes(panel: Panel) -> list[BaseRoute]:
    """``/login``, ``/logout`` and ``/api/login``."""

    def login_page(session: PanelSession, next_url: str, error: str, status: int) -> Response:
        html = panel.renderer.render("login.html", {"next": next_url, "error": error}, user=None, session=session)
        response = HTMLResponse(html, status_code=status)
        panel.set_cookie(response, session)
        return response

    async def show_login(request: Request) -> Response:
        next_url = _next_url(request.query_params.get("next"))
        user, session = await run_in_threadpool(panel.resolve_user, request)
        if user is not None:
            return RedirectResponse(next_url, status_code=303)
        if session is None or session.logged_in:
            session = panel.sessions.create()
        return login_page(session, next_url, "", 200)

    async def submit_login(request: Request) -> Response:
        try:
            params = await read_body_params(request, panel.settings.max_form_bytes)
        except Exception as exc:
            return panel.error_response(request, exc, api=False)
        next_url = _next_url(params.get("next"))
        session = panel.session_of(request)
        if session is None or session.logged_in or not csrf_token_ok(session, params.get(CSRF_FIELD)):
            return login_page(panel.sessions.create(), next_url, STALE_FORM_MESSAGE, 403)
        username = str(params.get("username", "")).strip()
        password = str(params.get("password", ""))
        try:
            token = await run_in_threadpool(accepted_token, panel.backend.authorizer, username, password)
        except PermissionDeniedError:
            return login_page(session, next_url, WRONG_LOGIN_MESSAGE, 401)
        fresh = panel.sessions.log_in(session, username, token)
        response = RedirectResponse(next_url, status_code=303)
        panel.set_cookie(response, fresh)
        return response

    async def logout(request: Request) -> Response:
        try:
            params = await read_body_params(request, panel.settings.max_form_bytes)
        except Exception as exc:
            return panel.error_response(request, exc, api=False)
        session = panel.session_of(request)
        if session is not None:
            if not csrf_token_ok(session, params.get(CSRF_FIELD)):
                return panel.error_response(
                    request, PermissionDeniedError("permission denied: missing or invalid CSRF token"), api=False
                )
            panel.sessions.drop(session.session_id)
        response = RedirectResponse("/login", status_code=303)
        panel.clear_cookie(response)
        return response

    async def api_login(request: Request) -> Response:
        try:
            params = await read_body_params(request, panel.settings.max_form_bytes)
        except Exception as exc:
            return panel.error_response(request, exc, api=True)
        username = str(params.get("username", "")).strip()
        password = str(params.get("password", ""))
        try:
            token = await run_in_threadpool(accepted_token, panel.backend.authorizer, username, password)
            identity = await run_in_threadpool(panel.backend.authorizer.authenticate, token)
        except PermissionDeniedError as exc:
            return unauthorized(exc.message)
        return JSONResponse(
            {
                "token": token,
                "username": identity.username,
                "can_manage_users": identity.can_manage_users,
                "expires_at": identity.token_expires_at,
            }
        )

    return [
        Route("/login", show_login, methods=["GET"]),
        Route("/login", submit_login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/login", api_login, methods=["POST"]),
    ]
