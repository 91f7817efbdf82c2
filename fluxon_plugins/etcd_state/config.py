"""Options of state store ``kind: etcd`` (importable without pyetcd, so the reference always lists them)."""

from __future__ import annotations

import attrs

from fluxon_core.config.fields import all_of, config_field, each, host_port, non_empty, positive, slash_wrapped


@attrs.frozen
class EtcdStateStoreConfig:
    """Options of state store ``kind: etcd``."""

    endpoints: list[str] = config_field(
        doc="etcd client endpoints as host:port (plain http, no TLS); failed endpoints are skipped for 0.5 s.",
        check=all_of(non_empty, each(host_port)),
    )
    key_prefix: str = config_field(
        doc="namespace prepended to every key; processes sharing jobs must use the same value.",
        default="/fluxon_fs_transfer/default/",
        check=all_of(non_empty, slash_wrapped),
    )
    timeout_s: float = config_field(doc="deadline of every etcd call in seconds.", default=5.0, check=positive)
    max_txn_ops: int = config_field(
        doc="most keys one batch_write may touch; must not exceed the server's --max-txn-ops (etcd default 128). "
        "A larger batch is rejected whole, never split, so batches stay atomic.",
        default=128,
        check=positive,
    )
    scan_page_size: int = config_field(
        doc="keys fetched per etcd range request while scan_prefix streams a prefix (bounds memory).",
        default=256,
        check=positive,
    )
