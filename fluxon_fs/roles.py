"""Starting the FS roles as child processes (the FS side of the role runtime)."""

from __future__ import annotations

import os

from fluxon_core.runtime.processes import ConfigSource, RoleProcess, start_role_process

FS_MASTER_MODULE = "fluxon_fs.fs_master"
FS_AGENT_MODULE = "fluxon_fs.fs_agent"
S3_GATEWAY_MODULE = "fluxon_fs.s3_gateway"


def start_fs_master_process(
    config: ConfigSource,
    *,
    workdir: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> RoleProcess:
    """Start an fs master (config: an FS role YAML path or dict with ``kvclient`` and ``fluxon_fs``)."""
    return start_role_process(FS_MASTER_MODULE, "fs_master", config, workdir=workdir, log_path=log_path)


def start_fs_agent_process(
    config: ConfigSource,
    *,
    workdir: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> RoleProcess:
    """Start an fs agent (config: an FS role YAML path or dict with ``kvclient`` and ``fluxon_fs.agent``)."""
    return start_role_process(FS_AGENT_MODULE, "fs_agent", config, workdir=workdir, log_path=log_path)


def start_s3_gateway_process(
    config: ConfigSource,
    *,
    workdir: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> RoleProcess:
    """Start an S3 gateway (config: an FS role YAML path or dict with ``kvclient`` and ``fluxon_fs.s3_gateway``)."""
    return start_role_process(S3_GATEWAY_MODULE, "s3_gateway", config, workdir=workdir, log_path=log_path)
