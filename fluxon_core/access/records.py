"""Records an access store hands out, and the canonical scope prefix. Password hashes never leave the store."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.relpath import split_relpath


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


def normalize_prefix(prefix: str) -> str:
    """The canonical form of a scope prefix: components joined by ``/``, ``""`` for the whole export.

    People write prefixes as ``/data/`` as often as ``data``, so surrounding slashes are accepted here.
    """
    if not isinstance(prefix, str):
        raise InvalidArgumentError(f"scope prefix must be a string, got {type(prefix).__name__}")
    try:
        return "/".join(split_relpath(prefix.lstrip("/")))
    except (PermissionError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidArgumentError(f"scope prefix {prefix!r} is not an export-relative directory: {reason}") from None


def prefix_problem(value: Any) -> str | None:
    """Config check: a scope prefix the store would accept."""
    try:
        normalize_prefix(value)
    except InvalidArgumentError as exc:
        return f"must be an export-relative directory: {exc.message}"
    return None
