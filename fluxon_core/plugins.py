"""Plugin discovery over the ``fluxon.plugins`` entry points, and the backend registry.

Discovery reads the entry points with :mod:`importlib.metadata` once per process
(:func:`get_plugin_manager`); each entry point names a module whose ``@hookimpl`` functions
implement hooks of :mod:`fluxon_core.hookspecs`. The project's own default plugins are entry points
of the ``fluxon`` distribution and load exactly like third-party ones. ``FLUXON_LOAD_PLUGINS`` (a
comma list of entry-point names) selects which *other* plugins load: unset loads all, empty loads
none beyond the defaults. Names are filtered before import, so an excluded plugin never runs code.
The distribution of each entry point is read with :mod:`importlib.metadata` because it decides the
plugin's origin (default or third-party) and stevedore's cache drops it; stevedore then imports
exactly the selected entry points.

Nothing a plugin does wrong takes the host down. It is recorded in
:attr:`FluxonPluginManager.failures` (listed by ``fluxon plugins``) and becomes an error only where
it matters:

* a module that fails to import, fails pluggy's validation or implements a hook that does not
  exist is not registered;
* a plugin whose register hook raises contributes nothing — its backends from every category,
  its commands and its lifecycle hooks are dropped — so a half-registered plugin is never used;
* a kind registered by two plugins is unusable: selecting it is an error naming both, while
  every other kind keeps working;
* an entry-point name used by two distributions loads the first (the ``fluxon`` one when it is
  involved) and reports the other.

Selecting a kind nobody provides raises an error listing the available kinds and the plugins that
failed to load, since one of those may be the provider the config expected.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
import pluggy
from stevedore import NamedExtensionManager

from fluxon_core import hookspecs
from fluxon_core.config.loader import load_config
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

Origin = Literal["default", "third-party", "core", "direct"]
"""Where a plugin came from: an entry point of ``fluxon``, of another distribution, a core module, or ``register()``."""

_KIND_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class PluginError(Exception):
    """A plugin misbehaved: bad registration, ambiguous kind, or a backend of the wrong shape."""


class UnknownBackendError(ValueError):
    """A config selected a backend kind (or category) that no loaded plugin provides."""


class DuplicateKindError(PluginError):
    """The selected kind is registered by several plugins, so none of them is used."""


@attrs.frozen
class PluginInfo:
    """A registered plugin and where it came from."""

    name: str
    origin: Origin
    module: str
    distribution: str | None = None
    version: str | None = None


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
    """A plugin that could not be used, with the reason."""

    name: str
    error: str


@attrs.frozen
class KindConflict:
    """A backend kind registered by more than one plugin; selecting it is an error."""

    category: str
    kind: str
    plugins: tuple[str, ...]

    def describe(self) -> str:
        """The error text, naming every plugin involved."""
        providers = " and by ".join(f"plugin {name!r}" for name in self.plugins)
        return (
            f"duplicate {self.category} kind {self.kind!r}: provided by {providers}; "
            f"uninstall one of them or leave it out of {LOAD_PLUGINS_ENV}"
        )


def call_hookimpl(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """Call one plugin's implementation with the arguments it declares (a subset of the hookspec's).

    Used instead of calling the hook as a whole wherever each plugin's call must be attributed to
    that plugin: backend and command registration, lifecycle notifications.
    """
    if impl.hookwrapper or impl.wrapper:
        raise PluginError(f"plugin {impl.plugin_name!r}: {impl.function.__name__} must not be a hook wrapper")
    return impl.function(*(kwargs[name] for name in impl.argnames))


def _check_category(category: str) -> None:
    if category not in REGISTER_HOOKS:
        raise UnknownBackendError(f"unknown backend category {category!r}; categories: {', '.join(REGISTER_HOOKS)}")


class BackendRegistry:
    """Backends by category and kind, as registered by the loaded plugins."""

    def __init__(self, entries: Iterable[BackendEntry] = (), failure_hint: Callable[[], str] = lambda: "") -> None:
        self._failure_hint = failure_hint
        self._entries: dict[str, dict[str, BackendEntry]] = {category: {} for category in REGISTER_HOOKS}
        self._conflicts: dict[tuple[str, str], KindConflict] = {}
        providers: dict[tuple[str, str], list[BackendEntry]] = {}
        for entry in entries:
            providers.setdefault((entry.category, entry.kind), []).append(entry)
        for (category, kind), found in providers.items():
            if len(found) == 1:
                self._entries[category][kind] = found[0]
                continue
            conflict = KindConflict(category, kind, tuple(sorted(entry.plugin for entry in found)))
            self._conflicts[(category, kind)] = conflict
            log.error("%s", conflict.describe())

    def kinds(self, category: str) -> list[str]:
        """Sorted kinds available in ``category`` (a kind registered twice is not available)."""
        _check_category(category)
        return sorted(self._entries[category])

    def entry(self, category: str, kind: str) -> BackendEntry:
        """The entry for ``kind``.

        Raises :class:`DuplicateKindError` naming the plugins when several register ``kind``, and
        :class:`UnknownBackendError` listing the available kinds and failed plugins when none does.
        """
        _check_category(category)
        conflict = self._conflicts.get((category, kind))
        if conflict is not None:
            raise DuplicateKindError(conflict.describe())
        found = self._entries[category].get(kind)
        if found is None:
            available = ", ".join(self.kinds(category)) or "none"
            raise UnknownBackendError(
                f"unknown {category} kind {kind!r}; available kinds: {available}{self._failure_hint()}"
            )
        return found

    def options(self, category: str, kind: str, options: Any = None) -> Any:
        """The options :meth:`create` hands to the factory: an instance of the kind's options class, or None.

        ``options`` is taken as in :meth:`create`; two selections of a kind are the same when these are equal.
        """
        return _options_for(self.entry(category, kind), options)

    def create(self, category: str, kind: str, options: Any = None) -> Any:
        """Build a backend and check it against the category's Protocol.

        ``options`` is an instance of the kind's options class, a mapping parsed with the strict
        loader, or None for the options' defaults. Kinds without options take None only.
        """
        entry = self.entry(category, kind)
        backend = entry.factory(_options_for(entry, options))
        protocol = BACKEND_PROTOCOLS[category]
        if not isinstance(backend, protocol):
            raise PluginError(
                f"plugin {entry.plugin!r}: {category} kind {kind!r} returned {type(backend).__name__}, "
                f"which does not implement {protocol.__name__}"
            )
        return backend

    def conflicts(self) -> list[KindConflict]:
        """Kinds registered by more than one plugin."""
        return sorted(self._conflicts.values(), key=lambda c: (c.category, c.kind))

    def by_plugin(self) -> dict[str, list[tuple[str, str]]]:
        """plugin name -> [(category, kind)] of the kinds it provides (conflicting ones included)."""
        out: dict[str, list[tuple[str, str]]] = {}
        for entries in self._entries.values():
            for entry in entries.values():
                out.setdefault(entry.plugin, []).append((entry.category, entry.kind))
        for conflict in self._conflicts.values():
            for plugin in conflict.plugins:
                out.setdefault(plugin, []).append((conflict.category, conflict.kind))
        return out


def _options_for(entry: BackendEntry, options: Any) -> Any:
    where = f"{entry.category}.{entry.kind}"
    if entry.config_type is None:
        if options is not None:
            raise TypeError(f"{where} takes no options, got {type(options).__name__}")
        return None
    if options is None or isinstance(options, Mapping):
        return load_config(entry.config_type, {} if options is None else options, where)
    if not isinstance(options, entry.config_type):
        raise TypeError(f"{where} takes {entry.config_type.__name__} options, got {type(options).__name__}")
    return options


def _backend_registrar(category: str, plugin: str, out: list[BackendEntry]) -> hookspecs.RegisterBackend:
    """The ``register`` callable for one plugin's hook; validated registrations go to ``out``."""

    def register(kind: str, factory: Callable[[Any], Any], config_type: type | None = None) -> None:
        if not isinstance(kind, str) or not _KIND_PATTERN.match(kind) or kind == "kind":
            raise PluginError(
                f"plugin {plugin!r} registered {category} kind {kind!r}; a kind is a name of letters, digits, "
                "'.', '_' and '-' other than 'kind'"
            )
        if not callable(factory):
            raise PluginError(f"plugin {plugin!r} registered {category} {kind!r} with a non-callable factory")
        if config_type is not None and not (isinstance(config_type, type) and attrs.has(config_type)):
            raise PluginError(
                f"plugin {plugin!r} registered {category} {kind!r} with a config_type that is not an attrs class"
            )
        if any(e.category == category and e.kind == kind for e in out):
            raise PluginError(f"plugin {plugin!r} registered {category} {kind!r} twice")
        out.append(BackendEntry(category, kind, plugin, factory, config_type))

    return register


def _normalized(distribution_name: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution_name).lower()


def _is_default(entry_point: importlib.metadata.EntryPoint) -> bool:
    dist = entry_point.dist
    return dist is not None and _normalized(dist.name or "") == DEFAULT_DISTRIBUTION


def _distribution_label(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return "an unnamed distribution" if dist is None else f"{dist.name} {dist.version}"


def allowed_plugin_names(environ: Mapping[str, str] | None = None) -> set[str] | None:
    """Entry-point names ``FLUXON_LOAD_PLUGINS`` allows beyond the defaults; None when unset (all load)."""
    raw = (os.environ if environ is None else environ).get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


class FluxonPluginManager:
    """Pluggy hooks of the loaded plugins, their origins, their failures and the backend registry."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("fluxon")
        self.pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._failures: list[PluginFailure] = []
        self._default_names: set[str] = set()
        self._registry: BackendRegistry | None = None
        self._lock = threading.RLock()

    @property
    def hook(self) -> Any:
        """The pluggy hook relay."""
        return self.pm.hook

    @property
    def failures(self) -> list[PluginFailure]:
        """Plugins that could not be used, in the order the problems were found."""
        with self._lock:
            return list(self._failures)

    @property
    def defaults(self) -> set[str]:
        """Entry-point names of the ``fluxon`` distribution (the default plugins)."""
        return set(self._default_names)

    def load_entry_points(self) -> None:
        """Scan ``fluxon.plugins`` and register every allowed plugin module (see the module docs).

        ``importlib.metadata`` tells which distribution each entry point comes from (default or
        third-party) and which names are allowed; stevedore then imports exactly those names, so
        an excluded plugin never runs code.
        """
        global entry_point_scans
        entry_point_scans += 1
        allowed = allowed_plugin_names()
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        # Defaults first, so a third-party distribution reusing a default's name cannot displace it.
        ordered = sorted(found, key=lambda ep: not _is_default(ep))
        seen: dict[str, importlib.metadata.EntryPoint] = {}
        selected: dict[str, importlib.metadata.EntryPoint] = {}
        with self._lock:
            for entry_point in ordered:
                is_default = _is_default(entry_point)
                if is_default:
                    self._default_names.add(entry_point.name)
                earlier = seen.get(entry_point.name)
                if earlier is not None:
                    self._record(
                        entry_point.name,
                        f"entry point name {entry_point.name!r} is used by {_distribution_label(earlier)} and by "
                        f"{_distribution_label(entry_point)}; only the first was loaded",
                    )
                    continue
                seen[entry_point.name] = entry_point
                if is_default or allowed is None or entry_point.name in allowed:
                    selected[entry_point.name] = entry_point
            for name in sorted((allowed or set()) - set(seen)):
                self._record(
                    name,
                    f"listed in {LOAD_PLUGINS_ENV}, but no installed distribution has this {ENTRY_POINT_GROUP!r} entry point",
                )
            self._load_with_stevedore(selected)

    def _load_with_stevedore(self, selected: dict[str, importlib.metadata.EntryPoint]) -> None:
        def on_failure(_manager: Any, entry_point: Any, exc: BaseException) -> None:
            self._record(entry_point.name, f"{type(exc).__name__}: {exc}")

        manager = _SelectedExtensionManager(selected, on_failure)
        for extension in manager:
            entry_point = selected[extension.name]
            dist = entry_point.dist
            info = PluginInfo(
                name=entry_point.name,
                origin="default" if _is_default(entry_point) else "third-party",
                module=entry_point.value,
                distribution=None if dist is None else dist.name,
                version=None if dist is None else dist.version,
            )
            try:
                self._register(extension.plugin, info)
            except Exception as exc:  # whatever a plugin's hooks look like, the host keeps going
                self._record(entry_point.name, f"{type(exc).__name__}: {exc}")

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        self.pm.register(plugin, name=info.name)
        unknown = sorted(
            caller.name
            for caller in self.pm.get_hookcallers(plugin) or []
            if not caller.has_spec()
            and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
        )
        if unknown:
            self.pm.unregister(name=info.name)
            raise PluginError(
                f"plugin {info.name!r} implements {', '.join(unknown)}, which is not a Fluxon hook "
                "(see fluxon_core/hookspecs.py)"
            )
        self._infos[info.name] = info
        self._registry = None

    def register(self, module_or_object: Any, name: str, origin: Origin = "direct") -> None:
        """Register a plugin object directly (core modules, embedding, tests); raises when pluggy refuses it."""
        module = getattr(module_or_object, "__name__", type(module_or_object).__name__)
        with self._lock:
            self._register(module_or_object, PluginInfo(name=name, origin=origin, module=module))

    def unregister(self, name: str) -> None:
        """Remove a registered plugin (embedding, tests); its backends go with it."""
        with self._lock:
            self.pm.unregister(name=name)
            self._infos.pop(name, None)
            self._registry = None

    def disable(self, name: str, error: str) -> None:
        """Record ``name`` as failed and drop everything it contributes (backends, commands, lifecycle hooks)."""
        with self._lock:
            self._record(name, error)
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            self._infos.pop(name, None)
            self._registry = None

    def _record(self, name: str, error: str) -> None:
        failure = PluginFailure(name, error)
        if failure not in self._failures:
            self._failures.append(failure)
            log.warning("plugin %r not used: %s", name, error)

    def backends(self) -> BackendRegistry:
        """The backend registry; register hooks run when it is first needed after a registration."""
        with self._lock:
            if self._registry is None:
                self._registry = BackendRegistry(self._collect_backends(), self.failure_hint)
            return self._registry

    def _collect_backends(self) -> list[BackendEntry]:
        staged: dict[str, list[BackendEntry]] = {}
        failed: dict[str, str] = {}
        for category, hook_name in REGISTER_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                plugin = impl.plugin_name
                if plugin in failed:
                    continue
                entries = staged.setdefault(plugin, [])
                try:
                    call_hookimpl(impl, register=_backend_registrar(category, plugin, entries))
                except Exception as exc:  # a broken plugin must not break the kinds of the others
                    failed[plugin] = f"{hook_name} raised {type(exc).__name__}: {exc}"
        for plugin, error in failed.items():
            staged.pop(plugin, None)
            self.disable(plugin, error)
        return [entry for entries in staged.values() for entry in entries]

    def plugins(self) -> list[PluginInfo]:
        """The registered plugins, sorted by name."""
        with self._lock:
            registered = {name for name, _ in self.pm.list_name_plugin() if name is not None}
            return [self._infos[name] for name in sorted(registered) if name in self._infos]

    def plugin_names(self) -> list[str]:
        """Names of the registered plugins."""
        return [info.name for info in self.plugins()]

    def failure_hint(self) -> str:
        """A clause naming plugins that failed, appended to errors about missing kinds."""
        failures = self.failures
        if not failures:
            return ""
        return "; plugins that failed to load: " + ", ".join(f"{f.name} ({f.error})" for f in failures)

    def notify(self, hook_name: str, **kwargs: Any) -> list[PluginFailure]:
        """Call every implementation of a lifecycle hook; one raising is logged and does not stop the others.

        Returns the implementations that raised. Example:
        ``get_plugin_manager().notify("fluxon_role_started", role="fs_agent", instance_key=key, config=config)``.
        """
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None or caller.spec is None:
            raise ValueError(f"{hook_name!r} is not a Fluxon hook")
        expected = set(caller.spec.argnames)
        if set(kwargs) != expected:
            raise TypeError(f"{hook_name} takes the arguments {sorted(expected)}, got {sorted(kwargs)}")
        problems: list[PluginFailure] = []
        for impl in reversed(caller.get_hookimpls()):  # pluggy's own calling order
            try:
                call_hookimpl(impl, **kwargs)
            except Exception as exc:
                log.exception("plugin %r: %s raised", impl.plugin_name, hook_name)
                problems.append(PluginFailure(impl.plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}"))
        return problems


class _SelectedExtensionManager(NamedExtensionManager):  # type: ignore[type-arg]
    """stevedore loading of exactly the selected entry points.

    Selection is by name *and* target, so the losing side of an entry-point name clash is never
    imported (stevedore alone selects by name only).
    """

    def __init__(self, selected: dict[str, importlib.metadata.EntryPoint], on_failure: Any) -> None:
        self._selected_values = {name: ep.value for name, ep in selected.items()}
        super().__init__(
            namespace=ENTRY_POINT_GROUP,
            names=sorted(selected),
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
        )

    def _load_one_plugin(self, ep: Any, invoke_on_load: bool, invoke_args: Any, invoke_kwds: Any) -> Any:
        if self._selected_values.get(ep.name) != ep.value:
            return None
        return super()._load_one_plugin(ep, invoke_on_load, invoke_args, invoke_kwds)


entry_point_scans = 0
"""How many times this process scanned the entry points (tests assert it stays at one)."""

_manager: FluxonPluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> FluxonPluginManager:
    """The process-wide plugin manager; entry points are scanned and register hooks run on the first call only."""
    global _manager
    with _manager_lock:
        if _manager is None:
            manager = FluxonPluginManager()
            manager.load_entry_points()
            # Run the register hooks now, so a failing one is reported before anything relies on its plugin.
            manager.backends()
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
