"""The user-facing ``transfer_state_store`` config objects of the guide, and opening the store.

These Python objects mirror the YAML block ``transfer_state_store: {kind: ..., <kind>: {...}}``; both
are validated by the options class the selected plugin registered, so there is one set of rules.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from fluxon_core.config import BackendConfig, load_config
from fluxon_core.config.fields import config_field
from fluxon_core.protocols import StateStore


class FluxonFsTransferStateStoreKind(enum.Enum):
    """Backends of the transfer state store."""

    TIKV = "tikv"
    SQLITE = "sqlite"
    ETCD = "etcd"


@attrs.frozen
class FluxonFsTransferStateStoreTiKvConfig:
    """TiKV: PD endpoints and the key namespace."""

    pd_endpoints: list[str]
    key_prefix: str


@attrs.frozen
class FluxonFsTransferStateStoreSqliteConfig:
    """Embedded sqlite file and the key namespace."""

    path: str
    key_prefix: str = "/fluxon_fs_transfer/default/"


@attrs.frozen
class FluxonFsTransferStateStoreEtcdConfig:
    """etcd endpoints and the key namespace."""

    endpoints: list[str]
    key_prefix: str


@attrs.frozen
class FluxonFsTransferStateStoreConfig:
    """Which backend holds transfer state, with that backend's options."""

    kind: FluxonFsTransferStateStoreKind
    tikv: FluxonFsTransferStateStoreTiKvConfig | None = None
    sqlite: FluxonFsTransferStateStoreSqliteConfig | None = None
    etcd: FluxonFsTransferStateStoreEtcdConfig | None = None

    def to_backend_config(self) -> BackendConfig:
        """The equivalent YAML backend block, validated by the plugin's options class."""
        kind = FluxonFsTransferStateStoreKind(self.kind).value
        options = getattr(self, kind)
        if options is None:
            raise ValueError(f"transfer_state_store.{kind} is required when kind is {kind!r}")
        block = {"kind": kind, kind: attrs.asdict(options)}
        return _load_backend_block(block, "transfer_state_store")


@attrs.frozen
class _StateStoreBlock:
    transfer_state_store: BackendConfig = config_field(doc="state store block.", backend="state_store")


def _load_backend_block(block: dict[str, Any], path: str) -> BackendConfig:
    holder = load_config(_StateStoreBlock, {"transfer_state_store": block})
    return holder.transfer_state_store


StateStoreSpec = FluxonFsTransferStateStoreConfig | BackendConfig | dict[str, Any]


def open_state_store(spec: StateStoreSpec) -> StateStore:
    """Open the store described by a guide-style config object, a parsed backend block or a YAML mapping."""
    if isinstance(spec, FluxonFsTransferStateStoreConfig):
        backend = spec.to_backend_config()
    elif isinstance(spec, BackendConfig):
        backend = spec
    elif isinstance(spec, dict):
        backend = _load_backend_block(spec, "transfer_state_store")
    else:
        raise TypeError(
            "transfer_state_store must be a FluxonFsTransferStateStoreConfig, a BackendConfig or a mapping, "
            f"got {type(spec).__name__}"
        )
    store: StateStore = backend.create("state_store")
    return store
