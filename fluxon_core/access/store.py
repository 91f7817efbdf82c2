"""The typed API of an access store, beyond the minimal :class:`fluxon_core.protocols.AccessStore`.

The fs master, the panel, the ``fluxon users`` CLI and the FS authorizer
program against this protocol; ``kind: sqlite`` (plugin ``sqlite_access``) implements it.

Every change bumps the store's ``auth_epoch`` in the same transaction, so a server caching access
state only needs to re-read one number to learn that something changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.access.records import ScopeAccessRecord, ScopeMode, UserAccess, UserRecord
from fluxon_core.protocols import AccessStore


@runtime_checkable
class AccessModelStore(AccessStore, Protocol):
    """Users, salted password hashes, scope grants, the auth epoch and the token secret."""

    def verify_credentials(self, username: str, password: str) -> UserRecord | None:
        """The user when the password matches; None otherwise, taking as long for unknown users."""
        ...

    def bootstrap(self, model: BootstrapAccessModelConfig) -> bool:
        """Write ``model`` when the store has no users; True when it did, False (no change) otherwise."""
        ...

    def add_user(self, username: str, password: str, *, can_manage_users: bool = False) -> UserRecord:
        """Create a user; an existing username is an InvalidArgumentError."""
        ...

    def remove_user(self, username: str) -> None:
        """Delete a user and its scope memberships; refuses to remove the last user who can manage users."""
        ...

    def set_password(self, username: str, new_password: str) -> UserRecord:
        """Replace the password; sessions issued before stop working within the revocation bound."""
        ...

    def set_can_manage_users(self, username: str, can_manage_users: bool) -> UserRecord:
        """Grant or withdraw user management (and access to every export); the last manager stays one."""
        ...

    def get_user(self, username: str) -> UserRecord | None:
        """One user, or None."""
        ...

    def list_users(self) -> list[UserRecord]:
        """All users by username."""
        ...

    def grant(self, export_name: str, prefix: str, mode: ScopeMode, usernames: Sequence[str]) -> ScopeAccessRecord:
        """Add ``usernames`` to the scope (export, prefix, mode), creating it when needed."""
        ...

    def revoke(
        self,
        export_name: str,
        prefix: str,
        *,
        mode: ScopeMode | str | None = None,
        usernames: Sequence[str] | None = None,
    ) -> int:
        """Remove ``usernames`` (all members when None) from the matching scopes; returns memberships removed.

        ``mode`` None matches both modes. A scope left without members is deleted.
        """
        ...

    def list_scopes(self, export_name: str | None = None) -> list[ScopeAccessRecord]:
        """Scope grants ordered by export, prefix and mode, optionally for one export."""
        ...

    def user_access(self, username: str) -> UserAccess | None:
        """What authorization needs about ``username`` in one snapshot, or None when there is no such user."""
        ...

    def auth_epoch(self) -> int:
        """A number that increases with every change to users or grants."""
        ...

    def token_secret(self) -> bytes:
        """The secret session tokens are signed with, shared by every process using this store."""
        ...

    def schema_version(self) -> int:
        """The schema version the store is at."""
        ...
