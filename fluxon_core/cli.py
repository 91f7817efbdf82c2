"""The ``fluxon`` command line. Every subcommand, built-in or not, comes from ``fluxon_register_commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

import attrs

from fluxon_core.hookspecs import hookimpl
from fluxon_core.plugins import PluginError, get_plugin_manager


@attrs.frozen
class Command:
    """A registered subcommand."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    plugin: str


def collect_commands() -> dict[str, Command]:
    """Every subcommand registered by loaded plugins; a name taken twice is an error naming both plugins."""
    manager = get_plugin_manager()
    for module_name in CORE_COMMAND_MODULES:
        if manager.pm.get_plugin(module_name) is None:
            manager.register(importlib.import_module(module_name), name=module_name)
    commands: dict[str, Command] = {}
    for impl in manager.hook.fluxon_register_commands.get_hookimpls():

        def register(name: str, help: str, add_arguments: Any, run: Any, _plugin: str = impl.plugin_name) -> None:
            if name in commands:
                raise PluginError(
                    f"duplicate command {name!r}: provided by plugin {commands[name].plugin!r} "
                    f"and by plugin {_plugin!r}"
                )
            commands[name] = Command(name, help, add_arguments, run, _plugin)

        impl.function(register=register)
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

    configure_logging()
    parser = build_parser(collect_commands())
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


def _plugins_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _plugins_run(args: argparse.Namespace) -> int:
    import json

    manager = get_plugin_manager()
    provided = manager.backends().by_plugin()
    names = manager.plugin_names()
    if args.json:
        report = {
            "plugins": [
                {
                    "name": name,
                    "default": name in manager.defaults,
                    "provides": [f"{c}:{k}" for c, k in sorted(provided.get(name, []))],
                }
                for name in names
            ],
            "failed": [{"name": f.name, "error": f.error} for f in manager.failures],
        }
        print(json.dumps(report, indent=2))
        return 0
    width = max((len(n) for n in names), default=10)
    print(f"{'plugin'.ljust(width)}  origin       provides")
    for name in names:
        kinds = ", ".join(f"{c}:{k}" for c, k in sorted(provided.get(name, []))) or "-"
        origin = (
            "default" if name in manager.defaults else ("core" if name.startswith("fluxon_core") else "third-party")
        )
        print(f"{name.ljust(width)}  {origin.ljust(11)}  {kinds}")
    for failure in manager.failures:
        print(f"FAILED {failure.name}: {failure.error}")
    return 0


@hookimpl
def fluxon_register_commands(register: Any) -> None:
    """``fluxon plugins``."""
    register("plugins", "list loaded plugins and the backend kinds each provides", _plugins_arguments, _plugins_run)


# Modules of the core that contribute commands through the same hook as every plugin.
CORE_COMMAND_MODULES: list[str] = ["fluxon_core.cli"]


if __name__ == "__main__":
    sys.exit(main())
