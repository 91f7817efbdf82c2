"""A :class:`fluxon_core.protocols.StateStore` kept in process memory.

Useful for tests and single-process demos: nothing survives the process. Stores opened with the
same ``space`` in one process see the same data, the way several handles see one database, and
``key_prefix`` namespaces the keys of each store inside its space.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence

import attrs

from fluxon_core.config.fields import all_of, config_field, identifier, non_empty, slash_wrapped
from fluxon_core.errors import StoreClosedError


@attrs.frozen
class MemoryStateStoreConfig:
    """Options of ``kind: memory``."""

    space: str = config_field(
        doc="stores opened with the same space in one process share their contents.",
        default="default",
        check=identifier,
    )
    key_prefix: str = config_field(
        doc="namespace prepended to every key inside the space.",
        default="/fluxon_fs_transfer/default/",
        check=all_of(non_empty, slash_wrapped),
    )


class _Space:
    """Sorted keys and their values, guarded by one lock; shared by every store opened on it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sorted_keys: list[str] = []
        self.values: dict[str, bytes] = {}

    def set(self, key: str, value: bytes) -> None:
        if key not in self.values:
            bisect.insort(self.sorted_keys, key)
        self.values[key] = value

    def remove(self, key: str) -> bool:
        if self.values.pop(key, None) is None:
            return False
        del self.sorted_keys[bisect.bisect_left(self.sorted_keys, key)]
        return True


_spaces: dict[str, _Space] = {}
_spaces_lock = threading.Lock()


def _open_space(name: str) -> _Space:
    with _spaces_lock:
        return _spaces.setdefault(name, _Space())


class MemoryStateStore:
    """The ``memory`` state store; thread-safe, every operation atomic under the space's lock."""

    def __init__(self, config: MemoryStateStoreConfig) -> None:
        self.config = config
        self._space = _open_space(config.space)
        self._prefix = config.key_prefix
        self._closed = False

    def _open(self) -> _Space:
        if self._closed:
            raise StoreClosedError(f"memory state store {self.config.space!r} is closed")
        return self._space

    def get(self, key: str) -> bytes | None:
        """The value or None."""
        space = self._open()
        with space.lock:
            return space.values.get(self._prefix + key)

    def put(self, key: str, value: bytes) -> None:
        """Write unconditionally."""
        space = self._open()
        with space.lock:
            space.set(self._prefix + key, bytes(value))

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        """Atomically replace when the current value equals ``expected`` (None = absent); None deletes."""
        space = self._open()
        full = self._prefix + key
        with space.lock:
            if space.values.get(full) != (None if expected is None else bytes(expected)):
                return False
            if value is None:
                space.remove(full)
            else:
                space.set(full, bytes(value))
            return True

    def delete(self, key: str) -> bool:
        """Delete; True when it existed."""
        space = self._open()
        with space.lock:
            return space.remove(self._prefix + key)

    def scan_prefix(self, prefix: str, *, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Keys starting with ``prefix`` in key order, as they were when the scan began."""
        space = self._open()
        full = self._prefix + prefix
        found: list[tuple[str, bytes]] = []
        with space.lock:
            index = bisect.bisect_left(space.sorted_keys, full)
            while index < len(space.sorted_keys) and (limit is None or len(found) < limit):
                key = space.sorted_keys[index]
                if not key.startswith(full):
                    break
                found.append((key[len(self._prefix) :], space.values[key]))
                index += 1
        yield from found

    def batch_write(self, puts: Sequence[tuple[str, bytes]], deletes: Sequence[str] = ()) -> None:
        """Apply all puts, then all deletes, atomically."""
        space = self._open()
        staged = [(self._prefix + key, bytes(value)) for key, value in puts]
        with space.lock:
            for key, value in staged:
                space.set(key, value)
            for key in deletes:
                space.remove(self._prefix + key)

    def close(self) -> None:
        """Refuse further calls on this handle; the space's data stays for other handles. Idempotent."""
        self._closed = True
