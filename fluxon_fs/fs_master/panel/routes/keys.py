"""S3 access keys: every user creates, lists and revokes their own; users who manage users, anyone's.

A new key's secret is shown once — in the flash message of the page after creating it, or in the
API answer — and never again: the access store keeps it for deriving signing keys only.
"""

from __future__ import annotations

from typing import Any

from fluxon_core.access.access_keys import AccessKeyRecord
from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.fs_master.panel.web import Action, ActionOutcome, RequestContext, View


def key_payload(key: AccessKeyRecord) -> dict[str, Any]:
    """An access key without its secret."""
    return {"access_key_id": key.access_key_id, "username": key.username, "created_at": key.created_at}


def build_keys(ctx: RequestContext) -> dict[str, Any]:
    """The user's own keys; every user's for a user who manages users."""
    store = ctx.backend.access_store
    keys = store.list_access_keys(None if ctx.user.can_manage_users else ctx.user.username)
    return {
        "username": ctx.user.username,
        "can_manage_users": ctx.user.can_manage_users,
        "keys": [key_payload(key) for key in keys],
    }


def create_key(ctx: RequestContext) -> ActionOutcome:
    """A new key of the user (or, for a user who manages users, of the user named in ``username``)."""
    username = ctx.text("username", ctx.user.username)
    if username != ctx.user.username:
        ctx.require_admin()
    created = ctx.backend.access_store.create_access_key(username)
    key_id, secret = created.record.access_key_id, created.secret_access_key
    return ActionOutcome(
        f"access key {key_id} of {username} created; its secret access key, shown only now: {secret}",
        {"key": key_payload(created.record), "secret_access_key": secret},
        redirect="/ui/keys/",
    )


def revoke_key(ctx: RequestContext) -> ActionOutcome:
    """Delete a key of the user's own (any key for a user who manages users)."""
    key_id = ctx.path_param("access_key_id")
    store = ctx.backend.access_store
    if not ctx.user.can_manage_users and key_id not in {
        key.access_key_id for key in store.list_access_keys(ctx.user.username)
    }:
        raise PermissionDeniedError(f"permission denied: access key {key_id!r} is not one of yours")
    record = store.revoke_access_key(key_id)
    return ActionOutcome(
        f"access key {record.access_key_id} of {record.username} revoked", {"key": key_payload(record)}
    )


VIEWS = [View(build_keys, ui_path="/ui/keys/", api_path="/api/keys", template="keys.html")]
ACTIONS = [
    Action(create_key, ui_path="/ui/keys/create", api_path="/api/keys"),
    Action(revoke_key, ui_path="/ui/keys/{access_key_id}/revoke", api_path="/api/keys/{access_key_id}/revoke"),
]
