"""What the FS product adds to ``fluxon``: the ``fs-master`` / ``fs-agent`` / ``s3-gateway`` roles and the ``demo``,
``prescan``, ``transfer`` and ``users`` commands (one module of this package each).

This module is the ``fluxon_fs`` entry point of the ``fluxon.plugins`` group; it names the command
modules only inside the hooks, so ``fluxon`` starts without importing the panel or the transfer engine.
"""

from __future__ import annotations

from fluxon_core.hookspecs import RegisterCommand, RegisterRole, hookimpl


@hookimpl
def fluxon_register_commands(register: RegisterCommand) -> None:
    """``demo``, ``prescan``, ``transfer`` and ``users``."""
    from fluxon_fs.cli import demo, prescan, transfer, users

    register(
        "demo",
        "run the whole stack on this host with example writer and reader",
        demo.add_demo_arguments,
        demo.run_demo,
    )
    register(
        "prescan",
        "pre-scan a local directory into the transfer state store",
        prescan.add_prescan_arguments,
        prescan.run_prescan_command,
    )
    register("transfer", "create, watch and control directory transfer jobs", transfer.add_arguments, transfer.run)
    register("users", "manage users and scope grants of an access db", users.add_arguments, users.run)


@hookimpl
def fluxon_register_roles(register: RegisterRole) -> None:
    """``fs-master``, ``fs-agent`` and ``s3-gateway``, all configured by :class:`~fluxon_fs.config.FsRoleConfig`."""
    from fluxon_fs.config import FsRoleConfig
    from fluxon_fs.roles import FS_AGENT_MODULE, FS_MASTER_MODULE, S3_GATEWAY_MODULE

    register("fs-master", FS_MASTER_MODULE, FsRoleConfig, "the fs master: export snapshot, panel, access, transfers")
    register("fs-agent", FS_AGENT_MODULE, FsRoleConfig, "an fs agent: serves exports, runs transfer workers")
    register("s3-gateway", S3_GATEWAY_MODULE, FsRoleConfig, "an S3 gateway: each export a bucket, SigV4 access keys")
