"""The scope access editor (admin): grant and revoke export + prefix + mode to users."""

from __future__ import annotations

from typing import Any

from fluxon_core.access.records import ScopeMode
from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.fs_master.panel.payloads import scope_payload
from fluxon_fs.fs_master.panel.web import Action, ActionOutcome, RequestContext, View


def scope_mode(ctx: RequestContext, field: str = "mode") -> ScopeMode:
    """A :class:`ScopeMode` parameter."""
    value = ctx.text(field)
    try:
        return ScopeMode(value)
    except ValueError:
        choices = ", ".join(mode.value for mode in ScopeMode)
        raise InvalidArgumentError(f"field {field!r} must be one of {choices}, got {value!r}") from None


def build_scopes(ctx: RequestContext) -> dict[str, Any]:
    """Every scope grant, plus the users and exports the grant form offers."""
    store = ctx.backend.access_store
    return {
        "scopes": [scope_payload(s) for s in store.list_scopes()],
        "usernames": [u.username for u in store.list_users() if not u.can_manage_users],
        "export_names": sorted(ctx.backend.export_snapshot().body["exports"]),
    }


def grant_scope(ctx: RequestContext) -> ActionOutcome:
    """Give users access to an export prefix."""
    usernames = ctx.names("usernames")
    if not usernames:
        raise InvalidArgumentError("field 'usernames' must name at least one user")
    record = ctx.backend.access_store.grant(ctx.text("export_name"), ctx.text("prefix", ""), scope_mode(ctx), usernames)
    shown = "/" + record.prefix
    return ActionOutcome(
        f"granted {record.mode.value} on {record.export_name}:{shown} to {', '.join(usernames)}",
        {"scope": scope_payload(record)},
    )


def revoke_scope(ctx: RequestContext) -> ActionOutcome:
    """Remove users (all members when none are named) from matching scopes."""
    usernames = ctx.names("usernames")
    mode = scope_mode(ctx) if ctx.text("mode", "") else None
    removed = ctx.backend.access_store.revoke(
        ctx.text("export_name"), ctx.text("prefix", ""), mode=mode, usernames=usernames or None
    )
    message = f"revoked {removed} grant(s)" if removed else "no matching grant; nothing changed"
    return ActionOutcome(message, {"removed": removed})


VIEWS = [View(build_scopes, ui_path="/ui/scopes/", api_path="/api/scopes", template="scopes.html", admin_only=True)]
ACTIONS = [
    Action(grant_scope, ui_path="/ui/scopes/grant", api_path="/api/scopes/grant", admin_only=True),
    Action(revoke_scope, ui_path="/ui/scopes/revoke", api_path="/api/scopes/revoke", admin_only=True),
]
