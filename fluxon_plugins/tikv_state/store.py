"""``kind: tikv`` — :class:`fluxon_core.protocols.StateStore` on TiKV's transactional API.

Keys are ``key_prefix + key`` in UTF-8. Every write is one optimistic (Percolator) transaction of
``tikv_client``: reads at the transaction's start timestamp, writes buffered and committed with
two-phase commit, and a commit fails if any written key was committed by someone else after that
start. That makes each operation atomic:

* ``compare_and_set`` reads the key in the transaction, compares, writes and commits. A commit that
  loses a write conflict did not happen; the read-compare-write is then run again in a fresh
  transaction, so the answer always reflects a value that was current while the call ran.
* ``put``, ``delete`` and ``batch_write`` are single transactions too, retried after a conflict
  (their writes do not depend on what they read, except ``delete``'s "did it exist" answer, which
  comes from the transaction that committed). Within a batch deletes win over puts of the same key
  and the last put of a key wins.
* ``get`` and every page of ``scan_prefix`` are snapshot reads at a fresh timestamp from PD. A page
  holds ``scan_page_size`` keys; the next page starts after the last key returned, so a long scan
  sees every key that existed throughout it once, in key order, and never reads at a timestamp older
  than one page (TiKV's GC could otherwise remove the versions it needs).

Values are stored with a one-byte format marker in front, so an empty value is a non-empty TiKV
value and can never be confused with an absent key.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from fluxon_core.errors import ApiError, InvalidArgumentError
from fluxon_plugins.tikv_state.config import TikvStateStoreConfig
from fluxon_plugins.tikv_state.session import TikvSession, commit_outcome_unknown

VALUE_FORMAT_MARKER = b"\x01"


def encode_value(value: bytes) -> bytes:
    """The TiKV value stored for ``value`` (bytes, bytearray or memoryview)."""
    return VALUE_FORMAT_MARKER + bytes(value)


def prefix_range_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix`` (b"" when there is none)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b""
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class _Transaction:
    """An optimistic ``tikv_client`` transaction that is always committed or rolled back.

    The client panics when an active transaction is dropped, so leaving the ``async with`` block
    without :meth:`commit` or :meth:`rollback` rolls back.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._txn: Any = None
        self._finished = False

    async def __aenter__(self) -> _Transaction:
        self._txn = await self._client.begin(False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if not self._finished:
            self._finished = True
            try:
                await self._txn.rollback()
            except Exception:  # nothing was committed; the error that got us here is the one to report
                pass

    async def get(self, key: bytes) -> bytes | None:
        """The value at the transaction's start timestamp (or as written earlier in the transaction)."""
        value = await self._txn.get(key)
        return None if value is None else bytes(value)

    async def put(self, key: bytes, value: bytes) -> None:
        """Buffer a write."""
        await self._txn.put(key, value)

    async def delete(self, key: bytes) -> None:
        """Buffer a delete."""
        await self._txn.delete(key)

    async def commit(self) -> None:
        """Two-phase commit of the buffered writes.

        A commit that failed before its commit point is rolled back at once: with several regions,
        some prewrites may have succeeded, and their locks would block readers until the TTL.
        """
        self._finished = True
        try:
            await self._txn.commit()
        except Exception as error:
            if not commit_outcome_unknown(error):
                try:
                    await self._txn.rollback()
                except Exception:  # the original failure is the one to report
                    pass
            raise

    async def rollback(self) -> None:
        """Abandon the transaction."""
        self._finished = True
        await self._txn.rollback()


class TikvStateStore:
    """Transactional job state in TiKV; safe to share between threads, usable from many processes."""

    def __init__(self, config: TikvStateStoreConfig) -> None:
        if not isinstance(config, TikvStateStoreConfig):
            raise InvalidArgumentError(f"state store kind 'tikv' needs TikvStateStoreConfig options, got {config!r}")
        self.config = config
        self._namespace = config.key_prefix.encode("utf-8")
        self._session = TikvSession(config.pd_endpoints, config.timeout_s)

    # -- keys and values --------------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        if not isinstance(key, str):
            raise InvalidArgumentError(f"state store key must be a string, got {key!r}")
        try:
            return self._namespace + key.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidArgumentError(f"state store key {key!r} is not valid UTF-8 text: {error}") from None

    def _decode(self, raw_key: bytes, stored: bytes | None) -> bytes | None:
        return None if stored is None else self._decode_present(raw_key, stored)

    def _decode_present(self, raw_key: bytes, stored: bytes) -> bytes:
        if not stored.startswith(VALUE_FORMAT_MARKER):
            raise ApiError(
                f"TiKV key {raw_key!r} holds a value this store did not write (expected the format marker "
                f"{VALUE_FORMAT_MARKER!r}); is another program using key_prefix {self.config.key_prefix!r}?"
            )
        return stored[len(VALUE_FORMAT_MARKER) :]

    # -- StateStore ---------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value or None."""
        raw_key = self._key(key)

        async def read() -> bytes | None:
            client = await self._session.client()
            snapshot = client.snapshot(await client.current_timestamp(), False)
            stored = await snapshot.get(raw_key)
            return self._decode(raw_key, None if stored is None else bytes(stored))

        return self._session.run(f"get {key!r}", read)

    def put(self, key: str, value: bytes) -> None:
        """Write unconditionally."""
        raw_key = self._key(key)
        stored = encode_value(value)

        async def write() -> None:
            async with _Transaction(await self._session.client()) as txn:
                await txn.put(raw_key, stored)
                await txn.commit()

        self._session.run(f"put {key!r}", write)

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        """Atomically replace when the current value equals ``expected`` (None = absent); None deletes."""
        raw_key = self._key(key)
        wanted = None if expected is None else bytes(expected)
        stored = None if value is None else encode_value(value)

        async def compare_and_write() -> bool:
            async with _Transaction(await self._session.client()) as txn:
                current = self._decode(raw_key, await txn.get(raw_key))
                if current != wanted:
                    await txn.rollback()
                    return False
                if stored is not None:
                    await txn.put(raw_key, stored)
                elif current is not None:
                    await txn.delete(raw_key)
                else:
                    await txn.rollback()  # absent and asked to stay absent: nothing to write
                    return True
                await txn.commit()
                return True

        return self._session.run(f"compare-and-set {key!r}", compare_and_write)

    def delete(self, key: str) -> bool:
        """Delete; True when it existed."""
        raw_key = self._key(key)

        async def remove() -> bool:
            async with _Transaction(await self._session.client()) as txn:
                if await txn.get(raw_key) is None:
                    await txn.rollback()
                    return False
                await txn.delete(raw_key)
                await txn.commit()
                return True

        return self._session.run(f"delete {key!r}", remove)

    def scan_prefix(self, prefix: str, *, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Keys starting with ``prefix`` in key order, fetched ``scan_page_size`` at a time."""
        start = self._key(prefix)
        end = prefix_range_end(start)
        self._session.check_open()
        return self._scan(prefix, start, end, limit)

    def _scan(self, prefix: str, start: bytes, end: bytes, limit: int | None) -> Iterator[tuple[str, bytes]]:
        strip = len(self._namespace)
        remaining = limit
        while remaining is None or remaining > 0:
            page_size = self.config.scan_page_size if remaining is None else min(remaining, self.config.scan_page_size)
            page = self._scan_page(prefix, start, end, page_size)
            for raw_key, stored in page:
                yield raw_key[strip:].decode("utf-8", errors="replace"), self._decode_present(raw_key, stored)
            if remaining is not None:
                remaining -= len(page)
            if len(page) < page_size:
                return
            start = page[-1][0] + b"\0"

    def _scan_page(self, prefix: str, start: bytes, end: bytes, page_size: int) -> list[tuple[bytes, bytes]]:
        async def read_page() -> list[tuple[bytes, bytes]]:
            client = await self._session.client()
            snapshot = client.snapshot(await client.current_timestamp(), False)
            pairs = await snapshot.scan(start, end or None, page_size, True, False)
            return [(bytes(key), bytes(value)) for key, value in pairs]

        return self._session.run(f"scan prefix {prefix!r}", read_page)

    def batch_write(self, puts: Sequence[tuple[str, bytes]], deletes: Sequence[str] = ()) -> None:
        """Apply all puts and deletes in one TiKV transaction."""
        final: dict[bytes, bytes | None] = {self._key(key): encode_value(value) for key, value in puts}
        final.update((self._key(key), None) for key in deletes)
        if not final:
            return
        self._session.check_open()

        async def write_all() -> None:
            async with _Transaction(await self._session.client()) as txn:
                for raw_key, stored in final.items():
                    if stored is None:
                        await txn.delete(raw_key)
                    else:
                        await txn.put(raw_key, stored)
                await txn.commit()

        self._session.run(f"batch write of {len(final)} keys", write_all)

    def close(self) -> None:
        """Drop the client and its connections; idempotent. Later calls raise StoreClosedError."""
        self._session.close()
