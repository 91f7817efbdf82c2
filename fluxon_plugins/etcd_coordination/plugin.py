"""Hook implementations of the ``etcd_coordination`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_plugins.etcd_coordination.config import EtcdCoordinatorConfig


def create_etcd_coordinator(options: EtcdCoordinatorConfig) -> Any:
    """Build the coordinator; pyetcd is imported only when ``kind: etcd`` is selected."""
    from fluxon_plugins.etcd_coordination.coordinator import EtcdCoordinator

    return EtcdCoordinator(options)


@hookimpl
def fluxon_register_coordinators(register: RegisterBackend) -> None:
    """Provide ``kind: etcd`` (leases, watches and membership in an etcd v3 cluster)."""
    register("etcd", create_etcd_coordinator, config_type=EtcdCoordinatorConfig)
