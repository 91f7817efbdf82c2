"""The ``fluxon`` command line. Every subcommand, built-in or not, comes from ``fluxon_register_commands``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from fluxon_core.hookspecs import RegisterCommand, hookimpl
from fluxon_core.plugins import (
    REGISTER_HOOKS,
    BackendRegistry,
    FluxonPluginManager,
    PluginError,
    call_hookimpl,
    get_plugin_manager,
)


@attrs.frozen
class Command:
    """A registered subcommand. ``conflicting_plugins`` is set when several plugins register the name."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    plugin: str
    conflicting_plugins: tuple[str, ...] = ()

    def conflict_message(self) -> str:
        """The error naming every plugin that registers this command."""
        return _conflict_message(self.name, self.conflicting_plugins)


def _conflict_message(name: str, plugins: tuple[str, ...]) -> str:
    providers = " and by ".join(f"plugin {plugin!r}" for plugin in plugins)
    return f"duplicate command {name!r}: provided by {providers}"


def _command_registrar(plugin: str, out: list[Command]) -> RegisterCommand:
    def register(
        name: str,
        help: str,
        add_arguments: Callable[[argparse.ArgumentParser], None],
        run: Callable[[argparse.Namespace], int],
    ) -> None:
        if not isinstance(name, str) or not name or name.startswith("-") or any(c.isspace() for c in name):
            raise PluginError(f"plugin {plugin!r} registered a command with the invalid name {name!r}")
        if not callable(add_arguments) or not callable(run):
            raise PluginError(f"plugin {plugin!r} registered command {name!r} with a non-callable add_arguments or run")
        if any(command.name == name for command in out):
            raise PluginError(f"plugin {plugin!r} registered command {name!r} twice")
        out.append(Command(name, help, add_arguments, run, plugin))

    return register


def _conflicted(name: str, plugins: tuple[str, ...]) -> Command:
    """A stand-in for a command several plugins claim: running it explains the conflict."""
    message = _conflict_message(name, plugins)

    def run(args: argparse.Namespace) -> int:
        print(
            f"fluxon: error: {message}; uninstall one of them or leave it out of FLUXON_LOAD_PLUGINS", file=sys.stderr
        )
        return 2

    return Command(name, f"unavailable: {message}", lambda parser: None, run, plugins[0], plugins)


def register_core_modules(manager: FluxonPluginManager) -> None:
    """Register the core's own hook implementations (its commands and roles) once per manager."""
    for module_name in CORE_COMMAND_MODULES:
        if manager.pm.get_plugin(module_name) is None:
            manager.register(importlib.import_module(module_name), name=module_name, origin="core")


def collect_commands() -> dict[str, Command]:
    """Every subcommand registered by the loaded plugins and the core command modules.

    A plugin whose hook raises is disabled and reported; a name registered by several plugins maps
    to a command that fails naming all of them.
    """
    manager = get_plugin_manager()
    register_core_modules(manager)
    providers: dict[str, list[Command]] = {}
    for impl in manager.hook.fluxon_register_commands.get_hookimpls():
        staged: list[Command] = []
        try:
            call_hookimpl(impl, register=_command_registrar(impl.plugin_name, staged))
        except Exception as exc:  # one broken plugin must not take the whole CLI down
            manager.disable(impl.plugin_name, f"fluxon_register_commands raised {type(exc).__name__}: {exc}")
            continue
        for command in staged:
            providers.setdefault(command.name, []).append(command)
    commands: dict[str, Command] = {}
    for name, candidates in providers.items():
        plugins = tuple(sorted({c.plugin for c in candidates}))
        commands[name] = candidates[0] if len(candidates) == 1 else _conflicted(name, plugins)
    return commands


def build_parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    """The argparse tree for ``commands``."""
    parser = argparse.ArgumentParser(prog="fluxon", description="Fluxon FS command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(commands):
        command = commands[name]
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fluxon`` console script."""
    from fluxon_core.log_setup import configure_logging

    try:
        configure_logging()
    except ValueError as exc:
        print(f"fluxon: error: {exc}", file=sys.stderr)
        return 2
    commands = collect_commands()
    words = sys.argv[1:] if argv is None else argv
    chosen = commands.get(words[0]) if words else None
    if chosen is not None and chosen.conflicting_plugins:
        # Refused before parsing: its arguments belong to commands that will not run.
        return chosen.run(argparse.Namespace())
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # The reader went away (``fluxon plugins | head``); silence the flush at exit as well.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


@attrs.frozen
class PluginReport:
    """What ``fluxon plugins`` shows: each plugin with what it provides, every kind per category, failures and conflicts.

    ``kinds`` maps each backend category to ``{"kind", "plugins", "usable"}`` entries; a kind
    registered by several plugins lists them all and is not usable.
    """

    plugins: list[dict[str, Any]]
    kinds: dict[str, list[dict[str, Any]]]
    failed: list[dict[str, str]]
    conflicts: list[dict[str, Any]]


def backend_kinds(registry: BackendRegistry) -> dict[str, list[dict[str, Any]]]:
    """Every backend kind per category (all categories, even empty ones) with the plugins providing it."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    conflicts = registry.conflicts()
    for category in REGISTER_HOOKS:
        entries = [
            {"kind": kind, "plugins": [registry.entry(category, kind).plugin], "usable": True}
            for kind in registry.kinds(category)
        ]
        entries += [
            {"kind": c.kind, "plugins": list(c.plugins), "usable": False} for c in conflicts if c.category == category
        ]
        kinds[category] = sorted(entries, key=lambda entry: entry["kind"])
    return kinds


def plugin_report() -> PluginReport:
    """The loaded plugins with their origin and contributions, the failed plugins and the conflicts."""
    manager = get_plugin_manager()
    commands = collect_commands()
    registry = manager.backends()
    provided: dict[str, list[str]] = {}
    for plugin, pairs in registry.by_plugin().items():
        provided.setdefault(plugin, []).extend(f"{category}:{kind}" for category, kind in pairs)
    for command in commands.values():
        for plugin in command.conflicting_plugins or (command.plugin,):
            provided.setdefault(plugin, []).append(f"command:{command.name}")
    plugins = [
        {
            "name": info.name,
            "origin": info.origin,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "provides": sorted(provided.get(info.name, [])),
        }
        for info in manager.plugins()
    ]
    conflicts: list[dict[str, Any]] = [
        {"category": c.category, "name": c.kind, "plugins": list(c.plugins), "error": c.describe()}
        for c in registry.conflicts()
    ]
    conflicts += [
        {"category": "command", "name": c.name, "plugins": list(c.conflicting_plugins), "error": c.conflict_message()}
        for c in sorted(commands.values(), key=lambda c: c.name)
        if c.conflicting_plugins
    ]
    failed = [{"name": f.name, "error": f.error} for f in manager.failures]
    return PluginReport(plugins, backend_kinds(registry), failed, conflicts)


def _plugins_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]))


def _plugins_run(args: argparse.Namespace) -> int:
    report = plugin_report()
    if args.json:
        print(json.dumps(attrs.asdict(report), indent=2))
        return 0
    rows = [
        (
            p["name"],
            p["origin"],
            f"{p['distribution']} {p['version']}" if p["distribution"] else "-",
            ", ".join(p["provides"]) or "-",
        )
        for p in report.plugins
    ]
    _print_table(("plugin", "origin", "distribution", "provides"), rows)
    print()
    kind_rows: list[tuple[str, str, str]] = []
    for category, entries in report.kinds.items():
        kind_rows += [
            (
                category,
                entry["kind"],
                " and ".join(entry["plugins"]) + ("" if entry["usable"] else " (unusable: duplicate)"),
            )
            for entry in entries
        ] or [(category, "-", "-")]
    _print_table(("category", "kind", "plugin"), kind_rows)
    for failure in report.failed:
        print(f"FAILED {failure['name']}: {failure['error']}")
    for conflict in report.conflicts:
        print(f"CONFLICT {conflict['error']}")
    return 0


@hookimpl
def fluxon_register_commands(register: RegisterCommand) -> None:
    """``fluxon plugins``."""
    register(
        "plugins",
        "list loaded plugins with their origin and what each provides, and every backend kind per category",
        _plugins_arguments,
        _plugins_run,
    )


# Modules of the core that contribute commands through the same hook as every plugin.
CORE_COMMAND_MODULES: list[str] = ["fluxon_core.cli", "fluxon_core.runtime.commands"]


if __name__ == "__main__":
    sys.exit(main())
