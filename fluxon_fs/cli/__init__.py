"""The ``fluxon`` subcommands of the FS product, contributed through ``fluxon_register_commands``."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import hookimpl


@hookimpl
def fluxon_register_commands(register: Any) -> None:
    """``demo`` and ``prescan``."""
    from fluxon_fs.cli.demo import add_demo_arguments, run_demo
    from fluxon_fs.cli.prescan import add_prescan_arguments, run_prescan_command

    register("demo", "run the whole stack on this host with example writer and reader", add_demo_arguments, run_demo)

    register(
        "prescan",
        "pre-scan a local directory into the transfer state store",
        add_prescan_arguments,
        run_prescan_command,
    )
