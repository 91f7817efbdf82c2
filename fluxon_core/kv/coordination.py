"""Building the coordinator a role's config selects (``local`` when none is given)."""

from __future__ import annotations

from fluxon_core.config import BackendConfig, load_config
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import Coordinator

DEFAULT_COORDINATOR_KIND = "local"


def create_coordinator(block: BackendConfig | None) -> Coordinator:
    """The coordinator of ``block``; an absent block means ``kind: local`` with default options."""
    if block is None:
        registry = get_backends()
        entry = registry.entry("coordinator", DEFAULT_COORDINATOR_KIND)
        options = None if entry.config_type is None else load_config(entry.config_type, {}, "coordination")
        coordinator: Coordinator = registry.create("coordinator", DEFAULT_COORDINATOR_KIND, options)
        return coordinator
    created: Coordinator = block.create("coordinator")
    return created


def etcd_block(addresses: list[str]) -> BackendConfig:
    """The coordination block ``etcd_addresses`` stands for."""
    entry = get_backends().entry("coordinator", "etcd")
    if entry.config_type is None:
        raise TypeError(f"coordinator kind 'etcd' of plugin {entry.plugin!r} declares no options class")
    options = load_config(entry.config_type, {"endpoints": list(addresses)}, "fluxonkv_spec.etcd_addresses")
    return BackendConfig(kind="etcd", options=options)


def coordination_kind(block: BackendConfig | None) -> str:
    """The kind name of ``block`` (``local`` when absent)."""
    return DEFAULT_COORDINATOR_KIND if block is None else block.kind
