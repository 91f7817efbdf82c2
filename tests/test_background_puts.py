"""The mount's background cache puts (``fluxon_fs/patcher/background_puts.py``): bounded, in order,
visible to this process while queued, and a cancel cannot be overtaken by a put in flight."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from fluxon_fs.patcher.background_puts import BackgroundPuts
from fluxon_fs.patcher.content_cache import Piece
from tests.support.poll import wait_until


class Store:
    """Where the batches land; ``gate`` (when set) holds every batch until it is opened."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[tuple[str, bytes]]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        if not gated:
            self.gate.set()

    def put_batch(self, batch: Sequence[tuple[str, Piece]]) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.batches.append([(key, bytes(data)) for key, data in batch])

    def keys(self) -> list[str]:
        return [key for batch in self.batches for key, _ in batch]


def test_puts_arrive_in_order_in_batches_and_are_visible_while_queued() -> None:
    store = Store(gated=True)
    puts = BackgroundPuts(store.put_batch)
    for n in range(10):
        assert puts.submit(f"k{n}", bytes([n]) * 10)
    assert puts.pending("k3") == bytes([3]) * 10  # queued or in flight: this process finds it
    store.gate.set()
    assert puts.flush(10)
    assert store.keys() == [f"k{n}" for n in range(10)]
    assert len(store.batches) <= 2  # the worker lets a short batch grow instead of storing each piece
    assert puts.pending("k3") is None and puts.stored == 10 and puts.dropped == 0


def test_a_full_queue_drops_and_counts_and_never_blocks() -> None:
    store = Store(gated=True)
    reported: list[int] = []
    puts = BackgroundPuts(store.put_batch, max_pieces=3, max_bytes=1000, on_drop=lambda: reported.append(1))
    results = [puts.submit(f"k{n}", b"x" * 100) for n in range(5)]
    wait_until(store.entered.is_set, 10, "the first batch to start")
    assert results[:3] == [True, True, True] and results[3:] == [False, False]
    assert puts.dropped == 2
    assert not puts.submit("big", b"x" * 1001)  # above the byte bound
    assert puts.dropped == 3 and len(reported) == 3
    store.gate.set()
    assert puts.flush(10)
    assert puts.submit("k5", b"x" * 100)  # stored pieces no longer count against the bound
    assert puts.flush(10)


def test_cancel_removes_a_queued_put_and_waits_for_one_in_flight() -> None:
    store = Store(gated=True)
    puts = BackgroundPuts(store.put_batch)
    puts.submit("first", b"1")
    wait_until(store.entered.is_set, 10, "the first batch to be in flight")
    puts.submit("queued", b"2")
    puts.cancel("queued")
    assert puts.pending("queued") is None

    cancelled = threading.Event()
    canceller = threading.Thread(target=lambda: (puts.cancel("first"), cancelled.set()))
    canceller.start()
    assert not cancelled.wait(0.2), "cancel returned while the put of the same key was still in flight"
    store.gate.set()
    assert cancelled.wait(10)
    canceller.join()
    assert puts.flush(10)
    assert store.keys() == ["first"]  # stored before cancel returned; "queued" never
