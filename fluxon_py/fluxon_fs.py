"""``fluxon_py.fluxon_fs``: the public FS API under the guide's import path (loaded lazily, like ``fluxon_fs``)."""

from __future__ import annotations

from typing import Any

import fluxon_fs

__all__ = fluxon_fs.__all__


def __getattr__(name: str) -> Any:
    if name in fluxon_fs.__all__:
        return getattr(fluxon_fs, name)
    raise AttributeError(f"module 'fluxon_py.fluxon_fs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *fluxon_fs.__all__})
