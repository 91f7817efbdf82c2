"""Plugin discovery (stevedore over the ``fluxon.plugins`` entry points) and the backend registry.

Entry points are scanned once per process. The project's own default plugins are entry points of
the ``fluxon`` distribution and load exactly like third-party ones; ``FLUXON_LOAD_PLUGINS`` (a
comma list of entry-point names) restricts which *other* plugins load — empty means none beyond
the defaults. A plugin that fails to import is recorded with its error and does not break roles
that do not select it.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections.abc import Callable
from typing import Any

import attrs
import pluggy
from stevedore import NamedExtensionManager

from fluxon_core import hookspecs
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import BACKEND_PROTOCOLS

ENTRY_POINT_GROUP = "fluxon.plugins"
DEFAULT_DISTRIBUTION = "fluxon"
LOAD_PLUGINS_ENV = "FLUXON_LOAD_PLUGINS"

log = get_logger("fluxon.plugins")

# backend category -> register hook name
REGISTER_HOOKS: dict[str, str] = {
    "transport": "fluxon_register_transports",
    "cache": "fluxon_register_caches",
    "state_store": "fluxon_register_state_stores",
    "access_store": "fluxon_register_access_stores",
    "coordinator": "fluxon_register_coordinators",
    "metrics_sink": "fluxon_register_metrics_sinks",
}


class PluginError(Exception):
    """A plugin misbehaved (duplicate kind, bad registration)."""


class UnknownBackendError(ValueError):
    """A config selected a backend kind that no loaded plugin provides."""


@attrs.frozen
class BackendEntry:
    """One registered backend: which plugin provides ``kind`` in ``category`` and how to build it."""

    category: str
    kind: str
    plugin: str
    factory: Callable[[Any], Any]
    config_type: type | None


@attrs.frozen
class PluginFailure:
    """A plugin entry point that could not be imported."""

    name: str
    error: str


class BackendRegistry:
    """Backends by category and kind, filled by the register hooks of every loaded plugin."""

    def __init__(self, pm: pluggy.PluginManager, failure_hint: str = "") -> None:
        self._failure_hint = failure_hint
        self._entries: dict[str, dict[str, BackendEntry]] = {c: {} for c in REGISTER_HOOKS}
        for category, hook_name in REGISTER_HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                impl.function(register=self._register_fn(category, impl.plugin_name))

    def _register_fn(self, category: str, plugin_name: str) -> Callable[..., None]:
        def register(kind: str, factory: Callable[[Any], Any], config_type: type | None = None) -> None:
            if not isinstance(kind, str) or not kind:
                raise PluginError(f"plugin {plugin_name!r} registered a {category} with an empty kind")
            if not callable(factory):
                raise PluginError(f"plugin {plugin_name!r} registered {category} {kind!r} with a non-callable factory")
            existing = self._entries[category].get(kind)
            if existing is not None:
                raise PluginError(
                    f"duplicate {category} kind {kind!r}: provided by plugin {existing.plugin!r} "
                    f"and by plugin {plugin_name!r}"
                )
            self._entries[category][kind] = BackendEntry(category, kind, plugin_name, factory, config_type)

        return register

    def kinds(self, category: str) -> list[str]:
        """Sorted kinds available in ``category``."""
        return sorted(self._entries[category])

    def entry(self, category: str, kind: str) -> BackendEntry:
        """The entry for ``kind``; unknown kinds raise :class:`UnknownBackendError` listing the available ones."""
        try:
            return self._entries[category][kind]
        except KeyError:
            available = ", ".join(self.kinds(category)) or "none"
            raise UnknownBackendError(
                f"unknown {category} kind {kind!r}; available kinds: {available}{self._failure_hint}"
            ) from None

    def create(self, category: str, kind: str, options: Any = None) -> Any:
        """Build a backend, checking the result against the category's Protocol."""
        entry = self.entry(category, kind)
        backend = entry.factory(options)
        protocol = BACKEND_PROTOCOLS[category]
        if not isinstance(backend, protocol):
            raise PluginError(
                f"plugin {entry.plugin!r}: {category} kind {kind!r} returned {type(backend).__name__}, "
                f"which does not implement {protocol.__name__}"
            )
        return backend

    def by_plugin(self) -> dict[str, list[tuple[str, str]]]:
        """plugin name -> [(category, kind)]."""
        out: dict[str, list[tuple[str, str]]] = {}
        for category, entries in self._entries.items():
            for entry in entries.values():
                out.setdefault(entry.plugin, []).append((category, entry.kind))
        return out


class FluxonPluginManager:
    """The process-wide plugin manager: pluggy hooks + the failures of plugins that did not load."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("fluxon")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.defaults: set[str] = set()
        self._registry: BackendRegistry | None = None
        self._registry_lock = threading.Lock()

    @property
    def hook(self) -> Any:
        """The pluggy hook relay."""
        return self.pm.hook

    def load_entry_points(self) -> None:
        """Scan ``fluxon.plugins`` once and register every allowed plugin module.

        Names are filtered *before* import, so a plugin excluded by ``FLUXON_LOAD_PLUGINS`` never runs code.
        """
        global entry_point_scans
        entry_point_scans += 1
        allowed = _allowed_names()
        names: list[str] = []
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(entry_point, "dist", None)
            is_default = dist is not None and dist.name == DEFAULT_DISTRIBUTION
            if is_default:
                self.defaults.add(entry_point.name)
            if is_default or allowed is None or entry_point.name in allowed:
                names.append(entry_point.name)

        def on_failure(_manager: Any, entry_point: Any, exc: BaseException) -> None:
            self.failures.append(PluginFailure(entry_point.name, f"{type(exc).__name__}: {exc}"))
            log.warning("plugin %r failed to load: %s: %s", entry_point.name, type(exc).__name__, exc)

        manager = NamedExtensionManager(
            namespace=ENTRY_POINT_GROUP,
            names=names,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
        )
        for ext in manager:
            if self.pm.get_plugin(ext.name) is None:
                try:
                    self.pm.register(ext.plugin, name=ext.name)
                except Exception as exc:  # a plugin with malformed hooks must not take the host down
                    on_failure(manager, ext.entry_point, exc)

    def register(self, module_or_object: Any, name: str) -> None:
        """Register a plugin object directly (tests, embedding); invalidates the backend registry."""
        self.pm.register(module_or_object, name=name)
        self._registry = None

    def backends(self) -> BackendRegistry:
        """The backend registry, built on first use."""
        with self._registry_lock:
            if self._registry is None:
                self._registry = BackendRegistry(self.pm, self.failure_hint())
            return self._registry

    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins."""
        return sorted(name for name, _ in self.pm.list_name_plugin() if name is not None)

    def failure_hint(self) -> str:
        """A sentence naming plugins that failed to load, for errors about missing kinds."""
        if not self.failures:
            return ""
        return "; plugins that failed to load: " + ", ".join(f"{f.name} ({f.error})" for f in self.failures)


entry_point_scans = 0
_manager: FluxonPluginManager | None = None
_manager_lock = threading.Lock()


def _allowed_names() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def get_plugin_manager() -> FluxonPluginManager:
    """The process-wide plugin manager; entry points are scanned on the first call only."""
    global _manager
    with _manager_lock:
        if _manager is None:
            manager = FluxonPluginManager()
            manager.load_entry_points()
            _manager = manager
        return _manager


def get_backends() -> BackendRegistry:
    """Shorthand for ``get_plugin_manager().backends()``."""
    return get_plugin_manager().backends()


def reset_plugin_manager_for_tests() -> None:
    """Forget the process-wide manager so the next call rescans (tests only)."""
    global _manager
    with _manager_lock:
        _manager = None
