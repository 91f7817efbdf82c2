"""The public FS API in one place (what ``fluxon_py.fluxon_fs`` re-exports)."""

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
    "FluxonFsTransferSkipEntry",
    "FluxonFsTransferSkipEntryKind",
    "FluxonFsTransferStateStoreConfig",
    "FluxonFsTransferStateStoreEtcdConfig",
    "FluxonFsTransferStateStoreKind",
    "FluxonFsTransferStateStoreSqliteConfig",
    "FluxonFsTransferStateStoreTiKvConfig",
    "TransferCheckSummary",
    "transfer_check_local_blocking",
]
