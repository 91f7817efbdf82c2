"""The role processes plugins contribute through ``fluxon_register_roles`` (``kv-master``, ``fs-agent``, ...)."""

from __future__ import annotations

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.hookspecs import RegisterRole
from fluxon_core.log_setup import get_logger
from fluxon_core.plugins import call_hookimpl, get_plugin_manager

log = get_logger("fluxon.runtime")


@attrs.frozen
class RoleEntry:
    """One registered role."""

    name: str
    """What ``fluxon start`` calls it, e.g. ``fs-agent``."""
    module: str
    """Run as ``python -m <module> --config F --workdir W``."""
    config_type: type
    """The attrs class its YAML is parsed into."""
    help: str
    plugin: str
    """The plugin that registered it."""


class RoleConflictError(InvalidArgumentError):
    """Two plugins registered the same role name."""


def registered_roles() -> dict[str, RoleEntry]:
    """Every role the loaded plugins (and the core) register, by name.

    A plugin whose hook raises is skipped and logged; a name registered twice raises
    :class:`RoleConflictError` naming both plugins.
    """
    from fluxon_core.cli import register_core_modules

    manager = get_plugin_manager()
    register_core_modules(manager)
    roles: dict[str, RoleEntry] = {}
    for impl in manager.hook.fluxon_register_roles.get_hookimpls():
        staged: list[RoleEntry] = []
        try:
            call_hookimpl(impl, register=_role_registrar(impl.plugin_name, staged))
        except Exception:  # one broken plugin must not hide every other role
            log.exception("plugin %s: fluxon_register_roles raised; its roles are skipped", impl.plugin_name)
            continue
        for entry in staged:
            other = roles.get(entry.name)
            if other is not None and other.plugin != entry.plugin:
                raise RoleConflictError(
                    f"role {entry.name!r} is registered by plugins {other.plugin} and {entry.plugin}"
                )
            roles[entry.name] = entry
    return roles


def _role_registrar(plugin: str, out: list[RoleEntry]) -> RegisterRole:
    def register(name: str, module: str, config_type: type, help: str) -> None:
        out.append(RoleEntry(name, module, config_type, help, plugin))

    return register


def role_module(name: str) -> str:
    """The module of role ``name``; an unknown name is an error listing the registered roles."""
    roles = registered_roles()
    if name not in roles:
        raise InvalidArgumentError(f"unknown role {name!r}; registered roles: {', '.join(sorted(roles))}")
    return roles[name].module
