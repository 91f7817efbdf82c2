"""The public FS API in one place (what ``fluxon_py.fluxon_fs`` re-exports)."""

from fluxon_fs.fs_agent.agent import FsAgent, publish_export, start_fs_agent, unpublish_export
from fluxon_fs.patcher.fs_patcher import FluxonFsPatcher, install_patcher_from_master
from fluxon_fs.roles import start_fs_agent_process, start_fs_master_process
from fluxon_fs.transfer.client import TransferClient
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.prescan import (
    FluxonFsTransferSkipEntry,
    FluxonFsTransferSkipEntryKind,
    TransferCheckSummary,
    transfer_check_local_blocking,
)
from fluxon_fs.transfer.state_config import (
    FluxonFsTransferStateStoreConfig,
    FluxonFsTransferStateStoreEtcdConfig,
    FluxonFsTransferStateStoreKind,
    FluxonFsTransferStateStoreSqliteConfig,
    FluxonFsTransferStateStoreTiKvConfig,
)

__all__ = [
    "FluxonFsPatcher",
    "FluxonFsTransferSkipEntry",
    "FluxonFsTransferSkipEntryKind",
    "FluxonFsTransferStateStoreConfig",
    "FluxonFsTransferStateStoreEtcdConfig",
    "FluxonFsTransferStateStoreKind",
    "FluxonFsTransferStateStoreSqliteConfig",
    "FluxonFsTransferStateStoreTiKvConfig",
    "FsAgent",
    "JobSpec",
    "TransferCheckSummary",
    "TransferClient",
    "install_patcher_from_master",
    "publish_export",
    "start_fs_agent",
    "start_fs_agent_process",
    "start_fs_master_process",
    "transfer_check_local_blocking",
    "unpublish_export",
]
