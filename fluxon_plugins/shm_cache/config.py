"""Options of the ``shm`` cache kind (the per-host shared-memory content pool)."""

from __future__ import annotations

from typing import Literal

import attrs

from fluxon_core.config.fields import absolute_path, config_field, positive
from fluxon_core.config.units import ByteSize
from fluxon_core.errors import InvalidArgumentError

PoolRole = Literal["owner", "reader"]


@attrs.frozen
class ShmCacheConfig:
    """Options of ``kind: shm``.

    One ``owner`` per host creates the pool and enforces its budget; any number of ``reader``
    processes on the same host attach to it by directory and read values without a round trip.
    ``path``, ``role`` and ``capacity`` place the pool; the KV plane fills them (see
    :mod:`fluxon_core.kv.pool`), so they have defaults and are checked when the pool is built.
    """

    path: str | None = config_field(
        doc="pool directory on a tmpfs, e.g. /dev/shm/fluxon_demo/<cluster>/pool; the owner creates it "
        "and wipes values left by earlier generations when it starts. Required; in the KV plane's `pool` "
        "block it is left out: the KV plane sets it from fluxonkv_spec.",
        default=None,
        check=absolute_path,
    )
    role: PoolRole = config_field(
        doc="owner: create the pool and manage its budget (one per host); reader: attach to the pool "
        "an owner created, reading zero-copy and sending writes through the owner. Set by the KV plane.",
        default="owner",
    )
    capacity: ByteSize = config_field(
        doc="owner: byte budget of the pool (the client's dram), > 0; each value is charged its tmpfs "
        "footprint, value + key + 32-byte trailer rounded up to 4 KiB pages. Readers take it from the pool. "
        "Set by the KV plane from contribute_to_cluster_pool_size.dram.",
        default=ByteSize(0),
    )
    copy_below: ByteSize = config_field(
        doc="values stored in files of at most this many bytes are read by copying (cheaper than a "
        "mapping for small values); larger ones are returned as zero-copy views of a mapping.",
        default=ByteSize(64 * 1024),
    )
    view_cache_entries: int = config_field(
        doc="per-process bound on values kept open (mapped or copied) for repeated gets without a reopen.",
        default=1024,
        check=positive,
    )
    view_cache_bytes: ByteSize = config_field(
        doc="per-process bound on the bytes of those cached values; a cached view of an evicted value "
        "keeps its memory alive until the cache drops it.",
        default=ByteSize(256 * 1024**2),
        check=positive,
    )
    touch_batch: int = config_field(
        doc="reader: gets are reported to the owner's LRU in batches of this many distinct values "
        "(or after a second), one append to the pool's touch log per batch.",
        default=64,
        check=positive,
    )
    sweep_interval_s: float = config_field(
        doc="owner: at most this often, writes also remove staged values of crashed external writers "
        "and apply readers' recency notes.",
        default=10.0,
        check=positive,
    )


def checked_config(config: ShmCacheConfig) -> ShmCacheConfig:
    """``config`` with units parsed, every field check applied and the placement complete.

    InvalidArgumentError names the field. Objects built directly in Python skip the loader, so the
    pool classes run it here.
    """
    from fluxon_core.config.loader import dump_config, load_config

    if not isinstance(config, ShmCacheConfig):
        raise InvalidArgumentError(
            f"cache kind 'shm' needs a ShmCacheConfig (path, role, capacity), got {type(config).__name__}"
        )
    try:
        loaded: ShmCacheConfig = load_config(ShmCacheConfig, dump_config(config), "cache.shm")
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    if loaded.path is None:
        raise InvalidArgumentError("cache.shm.path is required (the pool directory)")
    if loaded.role == "owner" and loaded.capacity <= 0:
        raise InvalidArgumentError("cache.shm.capacity must be > 0 for role owner (the pool's byte budget)")
    return loaded
