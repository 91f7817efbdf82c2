"""Records an access store hands out. Password hashes never leave the store, so none appear here."""

from __future__ import annotations

import enum

import attrs


class ScopeMode(enum.Enum):
    """What a scope grant allows under its prefix."""

    READ_ONLY = "read_only"
    READ_WRITE = "read_write"


@attrs.frozen
class UserRecord:
    """A user as listed by the store.

    ``credential_version`` changes whenever the user's password is set (and a re-created user gets a
    new one), so a session token carrying an older value is refused.
    """

    username: str
    can_manage_users: bool
    credential_version: int
    created_at: float
    updated_at: float


@attrs.frozen
class ScopeAccessRecord:
    """A scope grant: ``usernames`` may access ``prefix`` of ``export_name`` in ``mode``."""

    export_name: str
    prefix: str
    mode: ScopeMode
    usernames: tuple[str, ...]
    created_at: float
    updated_at: float


@attrs.frozen
class ScopeGrant:
    """One grant as seen from a single user: export, normalized prefix ("" = whole export), mode."""

    export_name: str
    prefix: str
    mode: ScopeMode


@attrs.frozen
class UserAccess:
    """Everything authorization needs about one user, read in one consistent snapshot."""

    username: str
    can_manage_users: bool
    credential_version: int
    grants: tuple[ScopeGrant, ...]
