"""Fluxon FS: in-process remote mounts, fs master, fs agent, content cache and directory transfers.

The public names below are importable from here (and from ``fluxon_py.fluxon_fs``); each loads its
module on first use, so ``import fluxon_fs`` pulls in neither the panel nor the transfer engine.

Layout, one package per concern:

* :mod:`fluxon_fs.patcher` — ``FluxonFsPatcher``: interception, remote files, caches, cache rules;
  ``ExportClient``: the exports without patching;
* :mod:`fluxon_fs.fsspec_fs` — ``fluxon://`` for fsspec (the ``fsspec`` extra);
* :mod:`fluxon_fs.export` — the export protocol: operations, wire codec, client, routing, serving side;
* :mod:`fluxon_fs.master_api` — the fs master's RPC protocol as clients and agents see it;
* :mod:`fluxon_fs.fs_master` (with its web panel, :mod:`fluxon_fs.fs_master.panel`), :mod:`fluxon_fs.fs_agent` — the two FS roles;
* :mod:`fluxon_fs.auth` — session tokens and scope decisions;
* :mod:`fluxon_fs.transfer` — transfer jobs and pre-scans; :mod:`fluxon_fs.cli` — ``fluxon`` subcommands;
* :mod:`fluxon_fs.roles` — starting the FS roles as processes; :mod:`fluxon_fs.demo` — the demo stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC_NAMES: dict[str, str] = {
    "FluxonFsPatcher": "fluxon_fs.patcher.fs_patcher",
    "FluxonFsTransferSkipEntry": "fluxon_fs.transfer.prescan",
    "FluxonFsTransferSkipEntryKind": "fluxon_fs.transfer.prescan",
    "FluxonFsTransferStateStoreConfig": "fluxon_fs.transfer.state_config",
    "FluxonFsTransferStateStoreEtcdConfig": "fluxon_fs.transfer.state_config",
    "FluxonFsTransferStateStoreKind": "fluxon_fs.transfer.state_config",
    "FluxonFsTransferStateStoreSqliteConfig": "fluxon_fs.transfer.state_config",
    "FluxonFsTransferStateStoreTiKvConfig": "fluxon_fs.transfer.state_config",
    "FsAgent": "fluxon_fs.fs_agent.agent",
    "JobSpec": "fluxon_fs.transfer.jobs",
    "TransferCheckSummary": "fluxon_fs.transfer.prescan",
    "TransferClient": "fluxon_fs.master_api.transfer_client",
    "install_patcher_from_master": "fluxon_fs.patcher.fs_patcher",
    "publish_export": "fluxon_fs.fs_agent.agent",
    "start_fs_agent": "fluxon_fs.fs_agent.agent",
    "start_fs_agent_process": "fluxon_fs.roles",
    "start_fs_master_process": "fluxon_fs.roles",
    "transfer_check_local_blocking": "fluxon_fs.transfer.prescan",
    "unpublish_export": "fluxon_fs.fs_agent.agent",
}
"""Public name -> the module defining it."""

__all__ = sorted(_PUBLIC_NAMES)


def __getattr__(name: str) -> Any:
    module = _PUBLIC_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'fluxon_fs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC_NAMES})
