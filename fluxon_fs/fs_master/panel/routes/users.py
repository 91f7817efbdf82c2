"""Users (admin): create, delete, reset password, manager flag; and each user's own account page."""

from __future__ import annotations

from typing import Any

from fluxon_core.errors import InvalidArgumentError, PermissionDeniedError
from fluxon_fs.fs_master.panel.payloads import user_payload
from fluxon_fs.fs_master.panel.web import Action, ActionOutcome, RequestContext, View, client_address


def build_users(ctx: RequestContext) -> dict[str, Any]:
    """Every user (admin only)."""
    return {"users": [user_payload(u) for u in ctx.backend.access_store.list_users()]}


def _password(ctx: RequestContext, field: str) -> str:
    password = ctx.text(field, strip=False)
    if not password:
        raise InvalidArgumentError(f"field {field!r} must not be empty")
    confirm = ctx.params.get(f"confirm_{field}")
    if confirm is not None and confirm != password:
        raise InvalidArgumentError(f"field 'confirm_{field}' does not match {field!r}")
    return password


def _renew_own_session(ctx: RequestContext, new_password: str) -> dict[str, Any]:
    """After the user's own password changed: a new access token for this session, other sessions dropped.

    Returns the API data: the new token when the request used a bearer token instead of a session.
    """
    token = ctx.panel.renew_token(ctx.user.username, new_password)
    keep = ctx.session.session_id if ctx.session is not None else ""
    ctx.panel.sessions.drop_user(ctx.user.username, keep=keep)
    if ctx.session is not None:
        ctx.session.access_token = token
        return {}
    return {"token": token}


def create_user(ctx: RequestContext) -> ActionOutcome:
    """Add a user."""
    username = ctx.text("username")
    password = _password(ctx, "password")
    # hashing a new password costs what checking one does: on the password-check threads too
    manager = ctx.flag("can_manage_users")
    record = ctx.panel.password_checks.run(
        lambda: ctx.backend.access_store.add_user(username, password, can_manage_users=manager)
    )
    return ActionOutcome(f"user {username!r} created", {"user": user_payload(record)})


def delete_user(ctx: RequestContext) -> ActionOutcome:
    """Remove a user and end its panel sessions at once."""
    username = ctx.path_param("username")
    ctx.backend.access_store.remove_user(username)
    ctx.panel.sessions.drop_user(username)
    return ActionOutcome(f"user {username!r} deleted", {"username": username})


def reset_password(ctx: RequestContext) -> ActionOutcome:
    """Set another user's (or one's own) password; that user's other sessions end."""
    username = ctx.path_param("username")
    password = _password(ctx, "password")
    record = ctx.panel.password_checks.run(lambda: ctx.backend.access_store.set_password(username, password))
    data: dict[str, Any] = {"user": user_payload(record)}
    if username == ctx.user.username:
        data.update(_renew_own_session(ctx, password))
    else:
        ctx.panel.sessions.drop_user(username)
    return ActionOutcome(f"password of {username!r} reset", data)


def set_manager(ctx: RequestContext) -> ActionOutcome:
    """Grant or withdraw ``can_manage_users``."""
    username = ctx.path_param("username")
    record = ctx.backend.access_store.set_can_manage_users(username, ctx.flag("can_manage_users"))
    verb = "may now manage users" if record.can_manage_users else "no longer manages users"
    return ActionOutcome(f"{username!r} {verb}", {"user": user_payload(record)})


def build_account(ctx: RequestContext) -> dict[str, Any]:
    """The user's own account and grants."""
    access = ctx.backend.access_store.user_access(ctx.user.username)
    grants = [] if access is None else access.grants
    return {
        "username": ctx.user.username,
        "can_manage_users": ctx.user.can_manage_users,
        "grants": [{"export_name": g.export_name, "prefix": g.prefix, "mode": g.mode.value} for g in grants],
    }


def change_own_password(ctx: RequestContext) -> ActionOutcome:
    """Change one's own password (the current one is asked again); this session stays logged in."""
    current = ctx.text("current_password", strip=False)
    new_password = _password(ctx, "new_password")
    try:  # checked exactly like a login: throttled, on the password-check threads
        ctx.panel.log_in(ctx.user.username, current, client_address(ctx.request))
    except PermissionDeniedError:
        raise InvalidArgumentError("the current password is wrong") from None
    ctx.panel.password_checks.run(lambda: ctx.backend.access_store.set_password(ctx.user.username, new_password))
    return ActionOutcome("password changed", _renew_own_session(ctx, new_password))


VIEWS = [
    View(build_users, ui_path="/ui/users/", api_path="/api/users", template="users.html", admin_only=True),
    View(build_account, ui_path="/ui/account/", api_path="/api/account", template="account.html"),
]
ACTIONS = [
    Action(create_user, ui_path="/ui/users/create", api_path="/api/users", admin_only=True),
    Action(
        delete_user, ui_path="/ui/users/{username}/delete", api_path="/api/users/{username}/delete", admin_only=True
    ),
    Action(
        reset_password,
        ui_path="/ui/users/{username}/password",
        api_path="/api/users/{username}/password",
        admin_only=True,
    ),
    Action(
        set_manager, ui_path="/ui/users/{username}/manage", api_path="/api/users/{username}/manage", admin_only=True
    ),
    Action(change_own_password, ui_path="/ui/account/password", api_path="/api/account/password"),
]
