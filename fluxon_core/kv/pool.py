"""The host's content pool as the KV plane uses it: the ``shm`` cache backend, as owner or reader.

The KV layer needs a little more than :class:`~fluxon_core.protocols.CacheBackend`: readers stage
a value in the pool and owners adopt it (so bytes never cross a socket), and sizes are read
without loading values. Those extra methods are declared here as protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from fluxon_core.config import load_config
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import Buffer, CacheBackend

POOL_KIND = "shm"


@runtime_checkable
class StagedPoolValue(Protocol):
    """A value a reader wrote into the pool's staging area, waiting for the owner to adopt it."""

    token: str

    def release(self) -> None:
        """Remove the staged file if it was not adopted; idempotent."""
        ...


@runtime_checkable
class OwnerPool(CacheBackend, Protocol):
    """The owner's side of the pool."""

    @property
    def location(self) -> str:
        """Directory readers attach to."""
        ...

    def adopt(self, key: str, token: str) -> None:
        """Make a value a reader staged visible under ``key``."""
        ...

    def size(self, key: str) -> int | None:
        """Length of the value, or None."""
        ...

    def keys(self) -> list[str]:
        """Every key present."""
        ...


@runtime_checkable
class ReaderPool(CacheBackend, Protocol):
    """An external client's attachment to its owner's pool."""

    def stage(self, key: str, parts: Sequence[Buffer]) -> StagedPoolValue:
        """Write a value into staging for the owner to adopt."""
        ...

    def size(self, key: str) -> int | None:
        """Length of the value, or None."""
        ...

    def owner_alive(self) -> bool:
        """Best effort: the pool's owner process still runs and has not closed the pool."""
        ...


def _options(data: dict[str, Any]) -> Any:
    entry = get_backends().entry("cache", POOL_KIND)
    if entry.config_type is None:
        return None
    return load_config(entry.config_type, data, f"cache.{POOL_KIND}")


def create_owner_pool(path: str, capacity_bytes: int) -> OwnerPool:
    """Create (and claim) the pool at ``path`` with a byte budget."""
    pool = get_backends().create(
        "cache", POOL_KIND, _options({"path": path, "role": "owner", "capacity": capacity_bytes})
    )
    if not isinstance(pool, OwnerPool):
        raise TypeError(f"cache kind {POOL_KIND!r} does not provide the owner pool operations the KV plane needs")
    return pool


def attach_reader_pool(path: str) -> ReaderPool:
    """Attach to the pool an owner created at ``path``."""
    pool = get_backends().create("cache", POOL_KIND, _options({"path": path, "role": "reader"}))
    if not isinstance(pool, ReaderPool):
        raise TypeError(f"cache kind {POOL_KIND!r} does not provide the reader pool operations the KV plane needs")
    return pool
