"""Every extension point of Fluxon, declared in one place.

Backends are contributed by *register hooks*: the hook receives a ``register`` callable and calls
``register(kind, factory, config_type=None)`` once per backend it provides. ``kind`` is the name
YAML selects with ``kind:``; ``factory`` builds the backend from its parsed options; ``config_type``
is the attrs class of the options block (``None`` when the backend takes no options).

Register hooks run once per process, when the plugin manager is first built, before any backend is
created: they should only name classes, and leave heavy imports and connections to the factory.
``docs/plugins.md`` documents every hook declared here (``tests/test_hookspec_docs.py`` checks it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("fluxon")
hookimpl = pluggy.HookimplMarker("fluxon")


class RegisterBackend(Protocol):
    """The ``register`` callable handed to every ``fluxon_register_*`` backend hook."""

    def __call__(self, kind: str, factory: Callable[[Any], Any], config_type: type | None = None) -> None:
        """Offer ``kind``: ``factory(options)`` builds the backend; ``options`` is a ``config_type`` instance or None."""
        ...


class RegisterCommand(Protocol):
    """The ``register`` callable handed to :func:`fluxon_register_commands`."""

    def __call__(
        self,
        name: str,
        help: str,
        add_arguments: Callable[[argparse.ArgumentParser], None],
        run: Callable[[argparse.Namespace], int],
    ) -> None:
        """Offer ``fluxon <name>``: ``add_arguments(parser)`` declares options, ``run(args)`` returns the exit status."""
        ...


class RegisterRole(Protocol):
    """The ``register`` callable handed to :func:`fluxon_register_roles`."""

    def __call__(self, name: str, module: str, config_type: type, help: str) -> None:
        """Offer role ``name``: run as ``python -m <module> --config F --workdir W``, its YAML parsed into ``config_type``."""
        ...


@hookspec
def fluxon_register_transports(register: RegisterBackend) -> None:
    """Register RPC transports (:class:`fluxon_core.protocols.Transport`), selected by ``transport: {kind: ...}``.

    Called once per process when the plugin manager is built; ``factory(options) -> Transport``.
    Return value is ignored. Raising drops every contribution of the plugin and records it as failed.
    """


@hookspec
def fluxon_register_caches(register: RegisterBackend) -> None:
    """Register content-cache pools (:class:`fluxon_core.protocols.CacheBackend`), selected by ``pool: {kind: ...}``.

    The KV plane's pool needs options with the placement fields ``path``, ``role`` and ``capacity``
    (see :mod:`fluxon_core.kv.pool`). Called once per process when the plugin manager is built;
    ``factory(options) -> CacheBackend``.
    Return value is ignored. Raising drops every contribution of the plugin and records it as failed.
    """


@hookspec
def fluxon_register_state_stores(register: RegisterBackend) -> None:
    """Register transactional state stores (:class:`fluxon_core.protocols.StateStore`).

    Used for ``transfer_state_store``. Called once per process when the plugin manager is built;
    ``factory(options) -> StateStore``. Return value is ignored. Raising drops every contribution
    of the plugin and records it as failed.
    """


@hookspec
def fluxon_register_access_stores(register: RegisterBackend) -> None:
    """Register access-control stores (:class:`fluxon_core.protocols.AccessStore`).

    Called once per process when the plugin manager is built; ``factory(options) -> AccessStore``.
    Return value is ignored. Raising drops every contribution of the plugin and records it as failed.
    """


@hookspec
def fluxon_register_coordinators(register: RegisterBackend) -> None:
    """Register coordination backends (:class:`fluxon_core.protocols.Coordinator`).

    Membership, leases and watches for the KV plane. Called once per process when the plugin
    manager is built; ``factory(options) -> Coordinator``. Return value is ignored. Raising drops
    every contribution of the plugin and records it as failed.
    """


@hookspec
def fluxon_register_metrics_sinks(register: RegisterBackend) -> None:
    """Register metrics sinks (:class:`fluxon_core.protocols.MetricsSink`).

    Called once per process when the plugin manager is built; ``factory(options) -> MetricsSink``.
    Return value is ignored. Raising drops every contribution of the plugin and records it as failed.
    """


@hookspec
def fluxon_register_roles(register: RegisterRole) -> None:
    """Register role processes: ``fluxon start <name>``, ``start_role_process`` and the config reference use them.

    ``register(name, module, config_type, help)``: ``module`` is run as ``python -m module --config F
    --workdir W``; ``config_type`` is the attrs class its YAML is parsed into (documented in the config
    reference). Called once per process when the roles are first needed. A name registered by two
    plugins is an error naming both. Raising drops every contribution of the plugin and records it as failed.
    """


@hookspec
def fluxon_role_started(role: str, instance_key: str, config: Any) -> None:
    """Called in a role process (``kv_master``, ``owner``, ``fs_master``, ``fs_agent``) after it is ready.

    ``config`` is the role's parsed config object. Every implementation is called even when one
    raises: exceptions are logged with the plugin's name and do not stop the role. Return value is ignored.
    """


@hookspec
def fluxon_role_stopping(role: str, instance_key: str) -> None:
    """Called in a role process when it begins a clean shutdown, before its resources are released.

    Every implementation is called even when one raises: exceptions are logged with the plugin's
    name and do not stop the shutdown. Return value is ignored.
    """


@hookspec
def fluxon_register_commands(register: RegisterCommand) -> None:
    """Add subcommands to the ``fluxon`` CLI.

    ``register(name, help, add_arguments, run)`` where ``add_arguments(parser)`` declares argparse
    options and ``run(args) -> int`` executes the command and returns the exit status. Called once
    when the CLI builds its parser. A name registered by two plugins is unusable: running it is an
    error naming both. Raising drops every contribution of the plugin and records it as failed.
    """
