"""Hook implementations of the ``local_coordination`` plugin."""

from __future__ import annotations

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_plugins.local_coordination.coordinator import LocalCoordinator


@hookimpl
def fluxon_register_coordinators(register: RegisterBackend) -> None:
    """Provide ``kind: local`` (embedded, in-process; takes no options)."""
    register("local", LocalCoordinator)
