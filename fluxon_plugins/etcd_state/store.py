"""``kind: etcd`` — :class:`fluxon_core.protocols.StateStore` on etcd v3, namespaced by ``key_prefix``.

* ``compare_and_set`` is one etcd transaction comparing the value (or, for ``expected=None``, that the
  key is absent: create revision 0) and then putting or deleting.
* ``batch_write`` is one etcd transaction, hence atomic, and therefore bounded by the server's
  ``--max-txn-ops`` (128 by default): a batch touching more keys than ``max_txn_ops`` raises
  :class:`~fluxon_core.errors.InvalidArgumentError` and writes nothing — it is never split. Within a
  batch the deletes win over puts of the same key and the last put of a key wins.
* ``scan_prefix`` streams ``scan_page_size`` keys per range request; each page is read at the
  latest revision, so a scan that runs while others write sees every key that existed throughout
  the scan, once, in key order.
* Values are limited by etcd's ``--max-request-bytes`` (1.5 MiB by default).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pyetcd import transactions
from pyetcd.utils import prefix_range_end

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.etcd_connection import EtcdConnection
from fluxon_plugins.etcd_state.config import EtcdStateStoreConfig


class EtcdStateStore:
    """Transactional job state in etcd; safe to share between threads, usable from many processes."""

    def __init__(self, config: EtcdStateStoreConfig) -> None:
        if not isinstance(config, EtcdStateStoreConfig):
            raise InvalidArgumentError(f"state store kind 'etcd' needs EtcdStateStoreConfig options, got {config!r}")
        self.config = config
        self._namespace = config.key_prefix.encode("utf-8")
        self._connection = EtcdConnection(config.endpoints, config.timeout_s)

    def _key(self, key: str) -> bytes:
        if not isinstance(key, str):
            raise InvalidArgumentError(f"state store key must be a string, got {key!r}")
        return self._namespace + key.encode("utf-8")

    def get(self, key: str) -> bytes | None:
        """The value or None."""
        raw_key = self._key(key)
        with self._connection.errors(f"get {key!r}"):
            value, _ = self._connection.client.get(raw_key)
        return None if value is None else bytes(value)

    def put(self, key: str, value: bytes) -> None:
        """Write unconditionally."""
        raw_key = self._key(key)
        data = bytes(value)
        with self._connection.errors(f"put {key!r}"):
            self._connection.client.put(raw_key, data)

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        """Atomically replace when the current value equals ``expected`` (None = absent); None deletes."""
        raw_key = self._key(key)
        if expected is None:
            compare = transactions.Create(raw_key) == 0
        else:
            compare = transactions.Value(raw_key) == bytes(expected)
        operation = transactions.Delete(raw_key) if value is None else transactions.Put(raw_key, bytes(value))
        with self._connection.errors(f"compare-and-set {key!r}"):
            succeeded, _ = self._connection.client.transaction(compare=[compare], success=[operation], failure=[])
        return bool(succeeded)

    def delete(self, key: str) -> bool:
        """Delete; True when it existed."""
        raw_key = self._key(key)
        with self._connection.errors(f"delete {key!r}"):
            return bool(self._connection.client.delete(raw_key))

    def scan_prefix(self, prefix: str, *, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Keys starting with ``prefix`` in key order, fetched ``scan_page_size`` at a time."""
        start = self._key(prefix)
        end = prefix_range_end(start)
        strip = len(self._namespace)
        remaining = limit
        while remaining is None or remaining > 0:
            page = self.config.scan_page_size if remaining is None else min(remaining, self.config.scan_page_size)
            with self._connection.errors(f"scan prefix {prefix!r}"):
                response = self._connection.client.get_range_response(start, end, limit=page, sort_order="ascend")
            for kv in response.kvs:
                yield bytes(kv.key)[strip:].decode("utf-8", errors="replace"), bytes(kv.value)
            if remaining is not None:
                remaining -= len(response.kvs)
            if not response.more or not response.kvs:
                return
            start = bytes(response.kvs[-1].key) + b"\0"

    def batch_write(self, puts: Sequence[tuple[str, bytes]], deletes: Sequence[str] = ()) -> None:
        """Apply all puts and deletes in one etcd transaction (at most ``max_txn_ops`` distinct keys)."""
        final: dict[bytes, bytes | None] = {self._key(key): bytes(value) for key, value in puts}
        final.update((self._key(key), None) for key in deletes)
        if not final:
            return
        if len(final) > self.config.max_txn_ops:
            raise InvalidArgumentError(
                f"batch_write touches {len(final)} keys but one etcd transaction may hold at most "
                f"max_txn_ops={self.config.max_txn_ops} (the server's --max-txn-ops); split the work into "
                "batches that are each allowed to commit on their own"
            )
        operations = [
            transactions.Delete(key) if value is None else transactions.Put(key, value) for key, value in final.items()
        ]
        with self._connection.errors(f"batch write of {len(operations)} keys"):
            self._connection.client.transaction(compare=[], success=operations, failure=[])

    def close(self) -> None:
        """Close the connection; idempotent. Later calls raise StoreClosedError."""
        self._connection.close()
