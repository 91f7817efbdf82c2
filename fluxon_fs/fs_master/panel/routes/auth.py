"""Login and logout: the password is checked once, then the session carries an access token.

The login page opens no server-side session: its form is protected by a signed double submit
(:class:`~fluxon_fs.fs_master.panel.login_sessions.LoginFormTokens`), and a session is created only
when the password was right. Wrong passwords are throttled per username and client address
(``429``), and password checks run in a bounded number of slots (``503``), both with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.auth.login_limits import PasswordChecksBusyError, TooManyAttemptsError, retry_after_header
from fluxon_fs.fs_master.panel.web import (
    CSRF_FIELD,
    Panel,
    add_retry_after,
    client_address,
    csrf_token_ok,
    is_local_path,
    read_body_params,
    unauthorized,
)

WRONG_LOGIN_MESSAGE = "Wrong username or password."
STALE_FORM_MESSAGE = "This login form expired or did not come from this panel; please try again."
THROTTLED_MESSAGE = "Too many failed logins for this user or from this address; try again in {seconds} s."
BUSY_MESSAGE = "The panel is busy checking other logins; please try again in a moment."
LOGIN_FORM_COOKIE = "fluxon_panel_login"
"""Holds the nonce the login form's CSRF token is bound to (see LoginFormTokens)."""


def _next_url(value: Any) -> str:
    return value if isinstance(value, str) and is_local_path(value) else "/ui/"


def routes(panel: Panel) -> list[BaseRoute]:
    """``/login``, ``/logout`` and ``/api/login``."""

    def login_page(request: Request, next_url: str, error: str, status: int) -> Response:
        nonce = request.cookies.get(LOGIN_FORM_COOKIE)
        if nonce is None or not panel.login_forms.usable_nonce(nonce):
            nonce = panel.login_forms.new_nonce()
        html = panel.renderer.render(
            "login.html",
            {"next": next_url, "error": error},
            user=None,
            session=None,
            csrf_token=panel.login_forms.issue(nonce),
        )
        response = HTMLResponse(html, status_code=status)
        response.set_cookie(
            LOGIN_FORM_COOKIE,
            nonce,
            httponly=True,
            samesite="lax",
            secure=panel.settings.cookie_secure,
            path="/login",
        )
        return response

    async def show_login(request: Request) -> Response:
        next_url = _next_url(request.query_params.get("next"))
        user, _ = await run_in_threadpool(panel.resolve_user, request)
        if user is not None:
            return RedirectResponse(next_url, status_code=303)
        return login_page(request, next_url, "", 200)

    async def submit_login(request: Request) -> Response:
        try:
            params = await read_body_params(request, panel.settings.max_form_bytes)
        except Exception as exc:
            return panel.error_response(request, exc, api=False)
        next_url = _next_url(params.get("next"))
        if not panel.login_forms.valid(request.cookies.get(LOGIN_FORM_COOKIE), params.get(CSRF_FIELD)):
            return login_page(request, next_url, STALE_FORM_MESSAGE, 403)
        username = str(params.get("username", "")).strip()
        password = str(params.get("password", ""))
        try:
            token = await run_in_threadpool(panel.log_in, username, password, client_address(request))
        except PermissionDeniedError:
            return login_page(request, next_url, WRONG_LOGIN_MESSAGE, 401)
        except TooManyAttemptsError as exc:
            wait = retry_after_header(exc.retry_after_s)
            page = login_page(request, next_url, THROTTLED_MESSAGE.format(seconds=wait), 429)
            add_retry_after(page, exc)
            return page
        except PasswordChecksBusyError as exc:
            page = login_page(request, next_url, BUSY_MESSAGE, 503)
            add_retry_after(page, exc)
            return page
        session = panel.sessions.open(username, token)
        response = RedirectResponse(next_url, status_code=303)
        panel.set_cookie(response, session)
        response.delete_cookie(LOGIN_FORM_COOKIE, path="/login", secure=panel.settings.cookie_secure)
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
            token = await run_in_threadpool(panel.log_in, username, password, client_address(request))
            identity = await run_in_threadpool(panel.backend.authorizer.authenticate, token)
        except PermissionDeniedError as exc:
            return unauthorized(exc.message)
        except (TooManyAttemptsError, PasswordChecksBusyError) as exc:
            return panel.error_response(request, exc, api=True)
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
