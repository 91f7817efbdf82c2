"""The host's content pool as the KV plane uses it: a ``cache`` backend, as owner or reader.

The kind is selected by the ``pool: {kind: ..., <kind>: {...}}`` block of the owner's config
(``shm`` by default). The owner records it in ``shared.json`` as ``pool_kind``; an external client
attaches with that kind, and may name it in its own ``pool`` block (to tune its reader options) but
not name another.

A cache kind can hold the pool when its options class has the *placement* fields ``path``,
``role`` (``owner`` or ``reader``) and ``capacity`` (bytes), all with defaults: the KV plane fills
them from ``fluxonkv_spec`` and ``contribute_to_cluster_pool_size``, so a ``pool`` block leaves
them out and sets only the kind's other options.

The KV layer needs a little more than :class:`~fluxon_core.protocols.CacheBackend`: readers stage
a value in the pool and owners adopt it (so bytes never cross a socket), and sizes are read
without loading values. Those extra methods are declared here as protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from fluxon_core.config import BackendConfig, ConfigError, dump_config, load_backend_block, load_config
from fluxon_core.errors import InvalidArgumentError, StoreInitFailedError
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import Buffer, CacheBackend, PrefixBudgetedCache

DEFAULT_POOL_KIND = "shm"

PLACEMENT_FIELDS: dict[str, str] = {
    "path": "fluxonkv_spec.shared_memory_path (<shared_memory_path>/<cluster_name>/pool)",
    "role": "contribute_to_cluster_pool_size.dram (owner when > 0, reader otherwise)",
    "capacity": "contribute_to_cluster_pool_size.dram",
}
"""Options of a pool kind that the KV plane sets, and where it takes each from."""


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


def prefix_budgets_of(pool: CacheBackend, kind: str) -> PrefixBudgetedCache:
    """``pool`` as a cache with prefix budgets; InvalidArgumentError when its kind has none."""
    if not isinstance(pool, PrefixBudgetedCache):
        raise InvalidArgumentError(f"pool kind {kind!r} does not support prefix budgets (set_prefix_budget)")
    return pool


def pool_block_problems(block: BackendConfig | None) -> list[tuple[str, str]]:
    """What is wrong with a parsed ``pool`` block, as ``(path below pool, expectation)`` pairs.

    The kind must be able to hold the pool (its options have the placement fields) and the block
    must leave the placement to the KV plane.
    """
    if block is None:
        return []
    entry = get_backends().entry("cache", block.kind)
    fields = {} if entry.config_type is None else {f.name: f for f in attrs.fields(entry.config_type)}
    missing = [name for name in PLACEMENT_FIELDS if name not in fields]
    if missing:
        return [
            (
                "kind",
                f"names cache kind {block.kind!r} of plugin {entry.plugin!r}, which cannot hold the KV pool: "
                f"its options lack {', '.join(missing)}",
            )
        ]
    return [
        (f"{block.kind}.{name}", f"is set by the KV plane from {source}; remove it")
        for name, source in PLACEMENT_FIELDS.items()
        if getattr(block.options, name) != _default_of(fields[name])
    ]


def _default_of(field: attrs.Attribute) -> Any:  # type: ignore[type-arg]
    default: Any = field.default
    return default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]


def owner_pool_block(block: BackendConfig | None) -> BackendConfig:
    """The pool an owner creates: its ``pool`` block, or ``shm`` with default options."""
    return load_backend_block("cache", {"kind": DEFAULT_POOL_KIND}, "pool") if block is None else block


def reader_pool_block(block: BackendConfig | None, owner_kind: str, origin: str) -> BackendConfig:
    """The pool an external client attaches with, given the owner's ``pool_kind`` read from ``origin``.

    StoreInitFailedError when the client's block names another kind, or the owner's kind is not
    installed in this process.
    """
    if block is None:
        try:
            return load_backend_block("cache", {"kind": owner_kind}, "pool")
        except ConfigError as exc:
            raise StoreInitFailedError(
                f"the owner's pool kind {owner_kind!r} (pool_kind in {origin}) cannot be used here: {exc}"
            ) from None
    if block.kind != owner_kind:
        raise StoreInitFailedError(
            f"pool.kind {block.kind!r} does not match the owner's pool kind {owner_kind!r} (pool_kind in {origin}); "
            f"name {owner_kind!r} or leave pool out to attach with the owner's kind"
        )
    return block


def _placed_options(block: BackendConfig, **placement: Any) -> Any:
    entry = get_backends().entry("cache", block.kind)
    if entry.config_type is None:
        raise TypeError(f"cache kind {block.kind!r} of plugin {entry.plugin!r} takes no options, so no pool placement")
    data = {} if block.options is None else dump_config(block.options)
    data.update(placement)
    return load_config(entry.config_type, data, f"pool.{block.kind}")


def create_owner_pool(block: BackendConfig, path: str, capacity_bytes: int) -> OwnerPool:
    """Create (and claim) the pool of kind ``block`` at ``path`` with a byte budget."""
    options = _placed_options(block, path=path, role="owner", capacity=capacity_bytes)
    pool = get_backends().create("cache", block.kind, options)
    if not isinstance(pool, OwnerPool):
        raise TypeError(f"cache kind {block.kind!r} does not provide the owner pool operations the KV plane needs")
    return pool


def attach_reader_pool(block: BackendConfig, path: str) -> ReaderPool:
    """Attach to the pool of kind ``block`` an owner created at ``path``."""
    pool = get_backends().create("cache", block.kind, _placed_options(block, path=path, role="reader"))
    if not isinstance(pool, ReaderPool):
        raise TypeError(f"cache kind {block.kind!r} does not provide the reader pool operations the KV plane needs")
    return pool
