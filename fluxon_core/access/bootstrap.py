"""The ``bootstrap_access_model`` config: users and scope grants seeded into an empty access store."""

from __future__ import annotations

import attrs

from fluxon_core.access.records import ScopeMode, prefix_problem
from fluxon_core.config.fields import config_field, identifier, non_empty

__all__ = ["BootstrapAccessModelConfig", "BootstrapScopeAccessConfig", "BootstrapUserConfig"]


@attrs.frozen(repr=False)
class BootstrapUserConfig:
    """One user seeded into an empty access db."""

    username: str = config_field(doc="login name: letters, digits, '.', '_' and '-'.", check=identifier)
    password: str = config_field(
        doc="initial password; stored only as a salted slow hash. Stops applying once changed in the panel or CLI.",
        check=non_empty,
    )
    can_manage_users: bool = config_field(
        doc="manage users and scopes, and read/write every current and future export.", default=False
    )

    def __repr__(self) -> str:
        # Config objects end up in logs and tracebacks; the password must not.
        return (
            f"BootstrapUserConfig(username={self.username!r}, password='***', "
            f"can_manage_users={self.can_manage_users!r})"
        )


@attrs.frozen
class BootstrapScopeAccessConfig:
    """One scope grant seeded into an empty access db."""

    export_name: str = config_field(doc="export the grant applies to.", check=identifier)
    mode: ScopeMode = config_field(doc="read_only allows reads only; read_write also allows changes.")
    usernames: list[str] = config_field(doc="users receiving the grant; each must be listed in users.", check=non_empty)
    prefix: str = config_field(
        doc="export-relative directory the grant covers, matched on whole path components "
        "('data' covers data and data/x, not database); empty means the whole export.",
        default="",
        check=prefix_problem,
    )


@attrs.frozen
class BootstrapAccessModelConfig:
    """Users and scope grants written to the access db when, and only when, it has no users."""

    users: list[BootstrapUserConfig] = config_field(
        doc="users to create; at least one must have can_manage_users: true.", check=non_empty
    )
    scope_access: list[BootstrapScopeAccessConfig] = config_field(
        doc="scope grants for users without can_manage_users.", factory=list
    )

    def __config_validate__(self) -> list[tuple[str, str]]:
        """Cross-field rules: unique usernames, a manager exists, scopes name known users."""
        problems: list[tuple[str, str]] = []
        seen: set[str] = set()
        for index, user in enumerate(self.users):
            if user.username in seen:
                problems.append((f"users[{index}].username", f"duplicates username {user.username!r}"))
            seen.add(user.username)
        if not any(user.can_manage_users for user in self.users):
            problems.append(("users", "must contain a user with can_manage_users: true"))
        for index, scope in enumerate(self.scope_access):
            for position, name in enumerate(scope.usernames):
                if name not in seen:
                    problems.append(
                        (f"scope_access[{index}].usernames[{position}]", f"names {name!r}, which is not in users")
                    )
        return problems
