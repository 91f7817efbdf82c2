"""Tunables of one mount (the lead maps ``fluxon_fs.cache`` config onto them)."""

from __future__ import annotations

import attrs

from fluxon_fs.config import DEFAULT_METADATA_CACHE_TTL_MS

MiB = 1024 * 1024


def _positive(instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"MountOptions.{attribute.name} must be a positive int, got {value!r}")


@attrs.frozen
class MountOptions:
    """How a mount caches and moves data."""

    metadata_cache_ttl_ms: int = attrs.field(default=DEFAULT_METADATA_CACHE_TTL_MS, validator=_positive)
    """How long stat/listdir answers are reused by this process."""

    stale_window_ms: int = attrs.field(default=1000, validator=_positive)
    """How long ``open`` may trust a cached file version without asking the agent again."""

    piece_bytes: int = attrs.field(default=MiB, validator=_positive)
    """Cache piece size; a file of at most this size is read whole at open in one call."""

    readahead_pieces: int = attrs.field(default=4, validator=_positive)
    """Pieces fetched ahead of a sequential reader."""

    write_chunk_bytes: int = attrs.field(default=8 * MiB, validator=_positive)
    """Largest payload of one ``session_write``."""

    write_inflight_bytes: int = attrs.field(default=128 * MiB, validator=_positive)
    """Bytes a writer keeps in flight to the agent before waiting (at least one chunk)."""
