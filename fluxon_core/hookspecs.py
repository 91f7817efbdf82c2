"""Every extension point of Fluxon, declared in one place.

Backends are contributed by *register hooks*: the hook receives a ``register`` callable and calls
``register(kind, factory, config_type=None)`` once per backend it provides. ``kind`` is the name
YAML selects with ``kind:``; ``factory`` builds the backend from its parsed options; ``config_type``
is the attrs class of the options block (``None`` when the backend takes no options).
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("fluxon")
hookimpl = pluggy.HookimplMarker("fluxon")


@hookspec
def fluxon_register_transports(register: Any) -> None:
    """Register RPC transports (:class:`fluxon_core.protocols.Transport`).

    Called once per process when the backend registry is built. ``register(kind, factory,
    config_type=None)``; ``factory(options) -> Transport``. Return value is ignored.
    """


@hookspec
def fluxon_register_caches(register: Any) -> None:
    """Register content-cache pools (:class:`fluxon_core.protocols.CacheBackend`).

    Called once per process when the backend registry is built; ``factory(options) -> CacheBackend``.
    Return value is ignored.
    """


@hookspec
def fluxon_register_state_stores(register: Any) -> None:
    """Register transactional state stores (:class:`fluxon_core.protocols.StateStore`).

    Used for ``transfer_state_store``. Called once per process when the backend registry is built;
    ``factory(options) -> StateStore``. Return value is ignored.
    """


@hookspec
def fluxon_register_access_stores(register: Any) -> None:
    """Register access-control stores (:class:`fluxon_core.protocols.AccessStore`).

    Called once per process when the backend registry is built; ``factory(options) -> AccessStore``.
    Return value is ignored.
    """


@hookspec
def fluxon_register_coordinators(register: Any) -> None:
    """Register coordination backends (:class:`fluxon_core.protocols.Coordinator`).

    Membership, leases and watches for the KV plane. Called once per process when the backend
    registry is built; ``factory(options) -> Coordinator``. Return value is ignored.
    """


@hookspec
def fluxon_register_metrics_sinks(register: Any) -> None:
    """Register metrics sinks (:class:`fluxon_core.protocols.MetricsSink`).

    Called once per process when the backend registry is built; ``factory(options) -> MetricsSink``.
    Return value is ignored.
    """


@hookspec
def fluxon_role_started(role: str, instance_key: str, config: Any) -> None:
    """Called in a role process (``kv_master``, ``owner``, ``fs_master``, ``fs_agent``) after it is ready.

    ``config`` is the role's parsed config object. Exceptions are logged and do not stop the role.
    Return value is ignored.
    """


@hookspec
def fluxon_role_stopping(role: str, instance_key: str) -> None:
    """Called in a role process when it begins a clean shutdown, before its resources are released.

    Exceptions are logged and do not stop the shutdown. Return value is ignored.
    """


@hookspec
def fluxon_register_commands(register: Any) -> None:
    """Add subcommands to the ``fluxon`` CLI.

    ``register(name, help, add_arguments, run)`` where ``add_arguments(parser)`` declares argparse
    options and ``run(args) -> int`` executes the command and returns the exit status. Called once
    when the CLI builds its parser. A name already taken is an error naming both plugins.
    """
