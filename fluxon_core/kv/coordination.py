"""Building the coordinator a role's config selects (``local`` when none is given).

A default kind is resolved like a written one, so a missing plugin is reported the same way:
naming the field and the installed kinds.
"""

from __future__ import annotations

from fluxon_core.config import BackendConfig, ConfigError, load_backend_block
from fluxon_core.protocols import Coordinator

DEFAULT_COORDINATOR_KIND = "local"


def create_coordinator(block: BackendConfig | None) -> Coordinator:
    """The coordinator of ``block``; an absent block means ``kind: local`` with default options."""
    if block is None:
        block = load_backend_block("coordinator", {"kind": DEFAULT_COORDINATOR_KIND}, "coordination")
    created: Coordinator = block.create("coordinator")
    return created


def etcd_block(addresses: list[str], field: str = "fluxonkv_spec.etcd_addresses") -> BackendConfig:
    """The coordination block an etcd address list (``field``) stands for."""
    try:
        return load_backend_block("coordinator", {"kind": "etcd", "etcd": {"endpoints": list(addresses)}}, "")
    except ConfigError as exc:
        # Only the kind can fail: the addresses already passed the field's own check.
        raise ConfigError(field, f"needs coordinator kind 'etcd', which {exc.expectation}") from None


def coordination_kind(block: BackendConfig | None) -> str:
    """The kind name of ``block`` (``local`` when absent)."""
    return DEFAULT_COORDINATOR_KIND if block is None else block.kind
