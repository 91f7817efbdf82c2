"""The ``fluxon`` subcommands of the FS product, contributed through ``fluxon_register_commands``."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import hookimpl


@hookimpl
def fluxon_register_commands(register: Any) -> None:
    """``prescan`` (and the other FS commands as they land)."""
    from fluxon_fs.transfer.cli import add_prescan_arguments, run_prescan_command

    register(
        "prescan",
        "pre-scan a local directory into the transfer state store",
        add_prescan_arguments,
        run_prescan_command,
    )
