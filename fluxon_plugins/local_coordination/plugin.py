"""Hook implementations of the ``local_coordination`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import hookimpl
from fluxon_plugins.local_coordination.coordinator import LocalCoordinator


@hookimpl
def fluxon_register_coordinators(register: Any) -> None:
    """Provide ``kind: local`` (embedded, in-process; takes no options)."""
    register("local", LocalCoordinator)
