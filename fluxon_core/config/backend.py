"""``kind:``-selected backend blocks, e.g. ``transfer_state_store: {kind: tikv, tikv: {...}}``."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class BackendConfig:
    """A backend selection: the ``kind`` name and its parsed options block (or None)."""

    kind: str
    options: Any = None

    def create(self, category: str) -> Any:
        """Build the backend from the process-wide registry."""
        from fluxon_core.plugins import get_backends

        return get_backends().create(category, self.kind, self.options)
