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
    roles, conflicts = _collect_roles()
    if conflicts:
        name, plugins = next(iter(conflicts.items()))
        raise RoleConflictError(f"role {name!r} is registered by plugins {' and '.join(plugins)}")
    return roles


def role_names() -> list[str]:
    """Every registered role name, conflicting ones included (starting one of those reports the conflict)."""
    roles, conflicts = _collect_roles()
    return sorted({*roles, *conflicts})


def _collect_roles() -> tuple[dict[str, RoleEntry], dict[str, list[str]]]:
    from fluxon_core.cli import register_core_modules

    manager = get_plugin_manager()
    register_core_modules(manager)
    providers: dict[str, list[RoleEntry]] = {}
    for impl in manager.hook.fluxon_register_roles.get_hookimpls():
        staged: list[RoleEntry] = []
        try:
            call_hookimpl(impl, register=_role_registrar(impl.plugin_name, staged))
        except Exception:  # one broken plugin must not hide every other role
            log.exception("plugin %s: fluxon_register_roles raised; its roles are skipped", impl.plugin_name)
            continue
        for entry in staged:
            providers.setdefault(entry.name, []).append(entry)
    roles: dict[str, RoleEntry] = {}
    conflicts: dict[str, list[str]] = {}
    for name, entries in providers.items():
        plugins = sorted({entry.plugin for entry in entries})
        if len(plugins) > 1:
            conflicts[name] = plugins
        else:
            roles[name] = entries[-1]
    return roles, conflicts


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
