"""A bounded per-process cache of loaded values, so repeated gets skip open/map/read."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import attrs

from fluxon_plugins.shm_cache.value_file import LoadedValue, still_intact


@attrs.define(slots=True)
class CachedValue:
    """A loaded value and what it was validated against."""

    digest: bytes
    ino: int
    file_size: int
    seal_ns: int
    view: memoryview
    mapped: bool
    """A live view of a shared mapping (re-checked with one ``stat`` before each use) or a private copy."""
    checked_at: int
    """The control-block change counter at the last check that the key still names ``ino``."""

    def usable(self, path: str) -> bool:
        """True when the view may be handed out again: a private copy always, a mapping while ``path`` is intact."""
        return not self.mapped or still_intact(path, self.ino, self.file_size, self.seal_ns)


def cached_value(digest: bytes, loaded: LoadedValue, checked_at: int) -> CachedValue:
    """The cache entry of a value just loaded."""
    return CachedValue(digest, loaded.ino, loaded.file_size, loaded.seal_ns, loaded.view, loaded.mapped, checked_at)


class ViewCache:
    """LRU of :class:`CachedValue` by key, bounded by entry count and bytes.

    Dropping an entry only drops this cache's reference: views handed out stay valid, and a
    mapping is unmapped when its last view is released.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._items: OrderedDict[str, CachedValue] = OrderedDict()
        self._bytes = 0

    def lookup(self, key: str) -> CachedValue | None:
        """The entry for ``key`` (marked most recently used) or None."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def store(self, key: str, item: CachedValue) -> None:
        """Insert or replace, then drop least recently used entries beyond the bounds."""
        self.drop(key)
        if item.file_size > self._max_bytes:
            return
        self._items[key] = item
        self._bytes += item.file_size
        while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.file_size

    def drop(self, key: str) -> None:
        """Forget ``key`` if cached."""
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old.file_size

    def clear(self) -> None:
        """Forget everything."""
        self._items.clear()
        self._bytes = 0

    def items(self) -> Iterator[tuple[str, CachedValue]]:
        """A snapshot of the entries, least recently used first."""
        return iter(list(self._items.items()))

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of the cached values' files."""
        return self._bytes
