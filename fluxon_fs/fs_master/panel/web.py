"""How a panel request is handled: who is asking, CSRF, parameters, errors, and page vs JSON.

Every feature is declared once as a :class:`View` (read-only, ``GET``) or an :class:`Action`
(state-changing, ``POST``) with a UI path and/or an API path. The UI path renders a template (a
view) or redirects with a flash message (an action); the API path returns the same data as JSON.
So the JSON API cannot drift from what the pages show.

Rules applied here, for every route:

* Login: a page without a session redirects to ``/login?next=…``; an API call gets ``401``.
  API calls may instead carry ``Authorization: Bearer <token>`` (a token from ``POST /api/login``).
  Every password check goes through :meth:`Panel.log_in`: throttled per username and client
  address (``429``) and bounded in concurrency (``503``), both with ``Retry-After``.
* CSRF: every ``POST`` made with the session cookie must carry the session's CSRF token: forms in
  the ``csrf_token`` field, API calls (``/api/…``) in the ``X-CSRF-Token`` header. Missing or wrong
  → ``403``. Bearer-token calls need none: no ambient credential is involved.
* ``admin_only`` routes need ``can_manage_users`` → otherwise ``403``.
* Backend work runs in the thread pool (the access db, the state store and agent RPCs block).
"""

from __future__ import annotations

import errno
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from fluxon_core.config import parse_byte_size
from fluxon_core.errors import (
    ApiError,
    InvalidArgumentError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
    PermissionDeniedError,
)
from fluxon_core.log_setup import get_logger
from fluxon_fs.auth.login_limits import (
    LoginThrottle,
    PasswordCheckPool,
    PasswordChecksBusyError,
    TooManyAttemptsError,
    retry_after_header,
)
from fluxon_fs.auth.scopes import split_export_path
from fluxon_fs.fs_master.panel.backend import PanelBackend
from fluxon_fs.fs_master.panel.login_sessions import CookieSigner, LoginFormTokens, PanelSession, SessionStore
from fluxon_fs.fs_master.panel.rendering import Renderer
from fluxon_fs.fs_master.panel.settings import PanelSettings

log = get_logger("fluxon.fs.panel")

COOKIE_NAME = "fluxon_panel_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
REFRESH_REQUEST_MARKER = "fluxon-refresh"
"""``X-Requested-With`` value of the auto-refresh fetches made by static/panel.js."""
CSRF_REFUSED_MESSAGE = "permission denied: missing or invalid CSRF token; reload the page and try again"
NOT_LOGGED_IN_MESSAGE = "permission denied: log in first"
ADMIN_ONLY_MESSAGE = "permission denied: this needs a user who can manage users"
TOKEN_ACCEPT_TIMEOUT_S = 10.0
_TOKEN_ACCEPT_POLL_S = 0.05
_REQUIRED: Any = object()


@attrs.frozen
class PanelUser:
    """The logged-in user of a request and the access token every authorization uses."""

    username: str
    can_manage_users: bool
    access_token: str = attrs.field(repr=False)


class Panel:
    """State shared by every route of one panel app."""

    def __init__(self, backend: PanelBackend, settings: PanelSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.sessions = SessionStore(
            idle_timeout_s=settings.session_idle_timeout_s,
            max_sessions=settings.max_sessions,
            max_sessions_per_user=settings.max_sessions_per_user,
        )
        # Sessions live in this process only, so per-process keys lose nothing on restart.
        self.cookies = CookieSigner(secrets.token_bytes(32))
        self.login_forms = LoginFormTokens(secrets.token_bytes(32), ttl_s=settings.login_form_ttl_s)
        protection = settings.login_protection
        self.login_throttle = LoginThrottle(protection)
        self.password_checks = PasswordCheckPool(
            protection.max_concurrent_password_checks, protection.password_check_wait_s
        )
        self.renderer = Renderer(settings)

    # ----- sessions and identity ----------------------------------------------------------------

    def session_of(self, request: Request) -> PanelSession | None:
        """The live session the request's cookie names, if any."""
        value = request.cookies.get(COOKIE_NAME)
        if not value:
            return None
        session_id = self.cookies.unsign(value)
        return self.sessions.get(session_id) if session_id else None

    def set_cookie(self, response: Response, session: PanelSession) -> None:
        """Point the browser at ``session``: HttpOnly, SameSite=Lax, Secure under an https base URL."""
        response.set_cookie(
            COOKIE_NAME,
            self.cookies.sign(session.session_id),
            httponly=True,
            samesite="lax",
            secure=self.settings.cookie_secure,
            path="/",
        )

    def clear_cookie(self, response: Response) -> None:
        """Make the browser forget the session cookie."""
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=self.settings.cookie_secure)

    def resolve_user(self, request: Request) -> tuple[PanelUser | None, PanelSession | None]:
        """The request's user (bearer token or session) and session; blocking (may read the access db).

        A session whose token stopped working (expired, password changed, user removed) is dropped.
        A bad bearer token raises :class:`PermissionDeniedError`.
        """
        authorization = request.headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
            identity = self.backend.authorizer.authenticate(token)
            return PanelUser(identity.username, identity.can_manage_users, token), None
        session = self.session_of(request)
        if session is None:
            return None, None
        try:
            identity = self.backend.authorizer.authenticate(session.access_token)
        except PermissionDeniedError:
            self.sessions.drop(session.session_id)
            return None, None
        return PanelUser(identity.username, identity.can_manage_users, session.access_token), session

    def log_in(self, username: str, password: str, client_address: str) -> str:
        """A session token for the right password, which the authorizer already accepts; blocking.

        Throttled per username and per ``client_address`` (:class:`TooManyAttemptsError`) and run
        on one of the few password-check threads (:class:`PasswordChecksBusyError`). A wrong
        username or password raises :class:`PermissionDeniedError`.
        """
        with self.login_throttle.attempt(username, client_address) as attempt:
            token = self.renew_token(username, password)
            attempt.succeeded()
        return token

    def renew_token(self, username: str, password: str) -> str:
        """Like :meth:`log_in` but not throttled, for a user who just set this password; blocking.

        Right after a password change the authorizer may still hold the user's previous credential
        version for up to its revocation bound and refuse the brand-new token; waiting here (bounded)
        keeps the next page from bouncing the user back to the login form.
        """
        token = self.password_checks.run(lambda: self.backend.authorizer.login(username, password))
        deadline = time.monotonic() + TOKEN_ACCEPT_TIMEOUT_S
        while True:
            try:
                self.backend.authorizer.authenticate(token)
                return token
            except PermissionDeniedError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(_TOKEN_ACCEPT_POLL_S)

    def close(self) -> None:
        """Stop the password-check threads (the server stopped)."""
        self.password_checks.close()

    # ----- responses ----------------------------------------------------------------------------

    def error_response(
        self, request: Request, exc: BaseException, *, api: bool, user: PanelUser | None = None
    ) -> Response:
        """The response for a failure: JSON ``{"error": {code, message}}`` or an error page."""
        status, code, message = describe_error(exc)
        response: Response
        if api:
            response = JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
        else:
            html = self.renderer.render(
                "error.html", {"status": status, "message": message}, user=user, session=self.session_of(request)
            )
            response = HTMLResponse(html, status_code=status)
        add_retry_after(response, exc)
        return response

    def login_redirect(self, request: Request) -> RedirectResponse:
        """Send a browser to the login page, coming back here afterwards."""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def unauthorized(message: str) -> JSONResponse:
    """``401`` for an API call without a (valid) session or bearer token."""
    return JSONResponse({"error": {"code": PermissionDeniedError.code, "message": message}}, status_code=401)


def client_address(request: Request) -> str:
    """The address the request came from (the proxy's, behind a reverse proxy)."""
    return request.client.host if request.client is not None else "unknown"


def add_retry_after(response: Response, exc: BaseException) -> None:
    """``Retry-After`` on the response to a throttled or busy refusal."""
    if isinstance(exc, TooManyAttemptsError | PasswordChecksBusyError):
        response.headers["retry-after"] = retry_after_header(exc.retry_after_s)


def describe_error(exc: BaseException) -> tuple[int, str, str]:
    """HTTP status, error code and user-facing message of a failure the panel expects."""
    if isinstance(exc, TooManyAttemptsError):
        return 429, exc.code, exc.message
    if isinstance(exc, PasswordChecksBusyError):
        return 503, exc.code, exc.message
    if isinstance(exc, PermissionDeniedError):
        return 403, exc.code, exc.message
    if isinstance(exc, PermissionError):
        return 403, "permission_denied", f"permission denied: {_os_message(exc)}"
    if isinstance(exc, KeyNotFoundError):
        return 404, exc.code, exc.message
    if isinstance(exc, FileNotFoundError):
        return 404, "not_found", _os_message(exc)
    if isinstance(exc, KeyAlreadyExistsError):
        return 409, exc.code, exc.message
    if isinstance(exc, FileExistsError):
        return 409, "already_exists", _os_message(exc)
    if isinstance(exc, InvalidArgumentError):
        return 400, exc.code, exc.message
    if isinstance(exc, NotADirectoryError | IsADirectoryError):
        return 400, "invalid_argument", _os_message(exc)
    if isinstance(exc, ApiError):
        return 502, exc.code, exc.message or str(exc)
    if isinstance(exc, OSError):
        return 502, errno.errorcode.get(exc.errno or 0, "os_error").lower(), _os_message(exc)
    return 500, "internal", "internal error; see the fs master log"


def _os_message(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return f"{text}: {exc.filename!r}" if exc.filename else text


def is_local_path(target: str) -> bool:
    """True for a path on this panel (``/x``), never another host (``//h``, ``/\\h``, ``http:…``)."""
    return target.startswith("/") and not target.startswith(("//", "/\\")) and "\r" not in target


@attrs.define
class RequestContext:
    """What a view or action gets: the user, the parameters, and the panel's components."""

    panel: Panel
    request: Request
    user: PanelUser
    session: PanelSession | None
    params: dict[str, Any]
    is_api: bool

    @property
    def backend(self) -> PanelBackend:
        """The fs master behind the panel."""
        return self.panel.backend

    @property
    def settings(self) -> PanelSettings:
        """Panel settings."""
        return self.panel.settings

    def path_param(self, name: str) -> str:
        """A ``{name}`` segment of the route path."""
        return str(self.request.path_params[name])

    def require_admin(self) -> None:
        """Refuse users who cannot manage users."""
        if not self.user.can_manage_users:
            raise PermissionDeniedError(ADMIN_ONLY_MESSAGE)

    def text(self, name: str, default: Any = _REQUIRED, *, strip: bool = True) -> str:
        """A string parameter; missing without ``default`` → :class:`InvalidArgumentError` naming it."""
        value = self.params.get(name)
        if value is None or (isinstance(value, str) and not value.strip() and default is not _REQUIRED):
            if default is _REQUIRED:
                raise InvalidArgumentError(f"field {name!r} is required")
            return str(default)
        if not isinstance(value, str):
            raise InvalidArgumentError(f"field {name!r} must be a string, got {type(value).__name__}")
        return value.strip() if strip else value

    def export_path(self, name: str, default: Any = _REQUIRED) -> str:
        """An export-relative path parameter with surrounding slashes and ``.`` components dropped.

        A NUL is :class:`InvalidArgumentError` (400) naming the field: no file name can hold one, and
        the OS would refuse it deep inside a backend call. ``..`` raises ``PermissionError`` (403),
        exactly as the agent would refuse it.
        """
        raw = self.text(name, default, strip=False)
        if "\x00" in raw:
            raise InvalidArgumentError(f"field {name!r} must not contain a NUL character (\\x00)")
        return "/".join(split_export_path(raw.strip("/")))

    def integer(self, name: str, default: int, *, minimum: int = 1) -> int:
        """An integer parameter of at least ``minimum``."""
        value = self.params.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number < minimum:
            raise InvalidArgumentError(f"field {name!r} must be an integer >= {minimum}, got {value!r}")
        return number

    def flag(self, name: str) -> bool:
        """A boolean: JSON true/false, or a form checkbox (present and not ``0``/``false``/``off``)."""
        value = self.params.get(name)
        if isinstance(value, bool):
            return value
        if value is None:
            return False
        return str(value).strip().lower() not in ("", "0", "false", "off", "no")

    def byte_size(self, name: str, default: int) -> int:
        """A byte size: an integer or a string like ``256MiB``."""
        value = self.params.get(name)
        if value is None or value == "":
            return default
        try:
            size = parse_byte_size(value)
        except ValueError as exc:
            raise InvalidArgumentError(f"field {name!r} {exc}") from None
        if size < 1:
            raise InvalidArgumentError(f"field {name!r} must be at least 1 byte, got {value!r}")
        return size

    def names(self, name: str) -> list[str]:
        """A list of names: a JSON list, or a form value separated by commas or spaces."""
        value = self.params.get(name)
        if value is None:
            return []
        items = value if isinstance(value, list) else str(value).replace(",", " ").split()
        if not all(isinstance(item, str) for item in items):
            raise InvalidArgumentError(f"field {name!r} must be a list of names")
        return [item.strip() for item in items if item.strip()]


@attrs.frozen
class View:
    """A read-only route: ``build`` returns JSON-ready data (or a finished :class:`Response`)."""

    build: Callable[[RequestContext], dict[str, Any] | Response]
    ui_path: str | None = None
    api_path: str | None = None
    template: str | None = None
    admin_only: bool = False


@attrs.frozen
class ActionOutcome:
    """What an action did: a message for the page, data for the API, where the page goes next."""

    message: str
    data: dict[str, Any] = attrs.Factory(dict)
    redirect: str | None = None


@attrs.frozen
class Action:
    """A state-changing ``POST`` route."""

    run: Callable[[RequestContext], ActionOutcome]
    ui_path: str | None = None
    api_path: str | None = None
    admin_only: bool = False


class _BadRequestBody(InvalidArgumentError):
    """The body could not be read as parameters."""


class _BodyTooLarge(InvalidArgumentError):
    """The body exceeds ``max_form_bytes``."""


async def read_body_params(request: Request, max_bytes: int) -> dict[str, Any]:
    """Parameters of a POST body: JSON object or urlencoded form (``multipart`` is not accepted)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _BodyTooLarge(f"request body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _BodyTooLarge(f"request body larger than {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/json":
            data = json.loads(body)
            if not isinstance(data, dict):
                raise _BadRequestBody("JSON body must be an object")
            return data
        if content_type in ("application/x-www-form-urlencoded", ""):
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequestBody(f"cannot read the request body: {exc}") from None
    raise _BadRequestBody(
        f"unsupported content type {content_type!r}; send application/json or application/x-www-form-urlencoded"
    )


def csrf_token_ok(session: PanelSession, supplied: Any) -> bool:
    """Constant-time comparison with the session's token."""
    if not isinstance(supplied, str) or not supplied:
        return False
    return hmac.compare_digest(supplied.encode("utf-8", "replace"), session.csrf_token.encode("ascii"))


def _back_url(request: Request, params: dict[str, Any]) -> str:
    """Where a page goes after an action: the form's ``next``, else the same-origin Referer, else home."""
    target = params.get("next")
    if isinstance(target, str) and is_local_path(target):
        return target
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == request.headers.get("host") and is_local_path(parts.path or "/"):
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/ui/"


def view_routes(panel: Panel, view: View) -> list[BaseRoute]:
    """Routes serving ``view`` as a page and/or as JSON."""

    def handler(api: bool) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                user, session = await run_in_threadpool(panel.resolve_user, request)
            except PermissionDeniedError as exc:
                return unauthorized(exc.message)
            if user is None:
                return unauthorized(NOT_LOGGED_IN_MESSAGE) if api else panel.login_redirect(request)
            ctx = RequestContext(panel, request, user, session, dict(request.query_params), api)

            def work() -> Response:
                if view.admin_only:
                    ctx.require_admin()
                data = view.build(ctx)
                if isinstance(data, Response):
                    return data
                if api or view.template is None:
                    return JSONResponse(data)
                refreshing = request.headers.get("x-requested-with") == REFRESH_REQUEST_MARKER
                html = panel.renderer.render(view.template, data, user=user, session=session, keep_flashes=refreshing)
                return HTMLResponse(html)

            try:
                return await run_in_threadpool(work)
            except Exception as exc:
                if describe_error(exc)[0] == 500:
                    log.exception("panel view %s failed", request.url.path)
                return panel.error_response(request, exc, api=api, user=user)

        return endpoint

    routes: list[BaseRoute] = []
    if view.ui_path:
        routes.append(Route(view.ui_path, handler(False), methods=["GET"]))
    if view.api_path:
        routes.append(Route(view.api_path, handler(True), methods=["GET"]))
    return routes


def action_routes(panel: Panel, action: Action) -> list[BaseRoute]:
    """Routes running ``action`` from a form (redirect + flash) and/or from the API (JSON)."""

    def handler(api: bool) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                params = await read_body_params(request, panel.settings.max_form_bytes)
            except _BodyTooLarge as exc:
                return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=413)
            except _BadRequestBody as exc:
                return panel.error_response(request, exc, api=True)
            try:
                user, session = await run_in_threadpool(panel.resolve_user, request)
            except PermissionDeniedError as exc:
                return unauthorized(exc.message)
            if user is None:
                return unauthorized(NOT_LOGGED_IN_MESSAGE) if api else RedirectResponse("/login", status_code=303)
            if session is not None:
                supplied = request.headers.get(CSRF_HEADER) if api else params.get(CSRF_FIELD)
                if not api and supplied is None:
                    supplied = request.headers.get(CSRF_HEADER)
                if not csrf_token_ok(session, supplied):
                    log.warning("panel: refused %s %s without a valid CSRF token", request.method, request.url.path)
                    return panel.error_response(
                        request, PermissionDeniedError(CSRF_REFUSED_MESSAGE), api=api, user=user
                    )
            ctx = RequestContext(panel, request, user, session, params, api)

            def work() -> ActionOutcome:
                if action.admin_only:
                    ctx.require_admin()
                return action.run(ctx)

            try:
                outcome = await run_in_threadpool(work)
            except Exception as exc:
                status, _, message = describe_error(exc)
                if status == 500:
                    log.exception("panel action %s failed", request.url.path)
                if api or status == 403 or session is None:
                    return panel.error_response(request, exc, api=api, user=user)
                session.flash("error", message)
                return RedirectResponse(_back_url(request, params), status_code=303)
            if api:
                return JSONResponse({"message": outcome.message, **outcome.data})
            if session is not None and outcome.message:
                session.flash("info", outcome.message)
            target = outcome.redirect or _back_url(request, params)
            return RedirectResponse(target, status_code=303)

        return endpoint

    routes: list[BaseRoute] = []
    if action.ui_path:
        routes.append(Route(action.ui_path, handler(False), methods=["POST"]))
    if action.api_path:
        routes.append(Route(action.api_path, handler(True), methods=["POST"]))
    return routes
