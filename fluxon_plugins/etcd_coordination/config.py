"""Options of coordinator ``kind: etcd`` (importable without pyetcd, so the reference always lists them)."""

from __future__ import annotations

import attrs

from fluxon_core.config.fields import all_of, config_field, each, host_port, non_empty, positive


@attrs.frozen
class EtcdCoordinatorConfig:
    """Options of coordinator ``kind: etcd``."""

    endpoints: list[str] = config_field(
        doc="etcd client endpoints as host:port (plain http, no TLS); failed endpoints are skipped for 0.5 s.",
        check=all_of(non_empty, each(host_port)),
    )
    key_prefix: str = config_field(
        doc="namespace prepended to every coordination key (empty: none); clusters sharing one etcd use different values.",
        default="",
    )
    timeout_s: float = config_field(
        doc="deadline of every etcd call, and of confirming a new watch, in seconds.", default=5.0, check=positive
    )
