"""Options of state store ``kind: tikv`` (importable without tikv_client, so the reference always lists them)."""

from __future__ import annotations

import attrs

from fluxon_core.config.fields import all_of, config_field, each, host_port, non_empty, positive, slash_wrapped


@attrs.frozen
class TikvStateStoreConfig:
    """Options of state store ``kind: tikv``."""

    pd_endpoints: list[str] = config_field(
        doc="PD (placement driver) client endpoints as host:port (plain http, no TLS); the client finds "
        "the PD leader and the TiKV stores from them.",
        check=all_of(non_empty, each(host_port)),
    )
    key_prefix: str = config_field(
        doc="namespace prepended to every key; processes sharing jobs must use the same value.",
        default="/fluxon_fs_transfer/default/",
        check=all_of(non_empty, slash_wrapped),
    )
    timeout_s: float = config_field(
        doc="deadline of every store call in seconds, including reconnecting, waiting for other "
        "transactions' locks and retrying after write conflicts.",
        default=10.0,
        check=positive,
    )
    scan_page_size: int = config_field(
        doc="keys fetched per TiKV scan while scan_prefix streams a prefix (bounds memory).",
        default=256,
        check=positive,
    )
