"""What the FS product adds to ``fluxon``: the ``fs-master`` / ``fs-agent`` roles and the ``demo`` / ``prescan`` commands.

The ``users`` and ``transfer`` commands register from their own modules of this package.
"""

from __future__ import annotations

from fluxon_core.hookspecs import RegisterCommand, RegisterRole, hookimpl


@hookimpl
def fluxon_register_commands(register: RegisterCommand) -> None:
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


@hookimpl
def fluxon_register_roles(register: RegisterRole) -> None:
    """``fs-master`` and ``fs-agent``, both configured by :class:`~fluxon_fs.config.FsRoleConfig`."""
    from fluxon_fs.config import FsRoleConfig
    from fluxon_fs.roles import FS_AGENT_MODULE, FS_MASTER_MODULE

    register("fs-master", FS_MASTER_MODULE, FsRoleConfig, "the fs master: export snapshot, panel, access, transfers")
    register("fs-agent", FS_AGENT_MODULE, FsRoleConfig, "an fs agent: serves exports, runs transfer workers")
