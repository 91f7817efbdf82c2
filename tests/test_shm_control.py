"""The pool's control block is never seen torn by a reader in another process."""

from __future__ import annotations

import multiprocessing
import os

from fluxon_plugins.shm_cache.control import STATE_OPEN, ControlBlock


def _publish_forever(path: str, stop) -> None:
    block = ControlBlock.open_for_owner(path)
    used = 0
    while not stop.is_set():
        used += 4096
        block.publish(used_bytes=used, entries=used // 4096, evictions=0)
    block.close()


def test_reader_never_sees_a_zeroed_or_backward_control_block(tmp_path):
    path = str(tmp_path / "pool.ctl")
    owner = ControlBlock.open_for_owner(path)
    owner.publish(
        used_bytes=0,
        entries=0,
        evictions=0,
        generation=7,
        capacity_bytes=1 << 30,
        owner_pid=os.getpid(),
        state=STATE_OPEN,
    )
    reader = ControlBlock.attach(path)
    stop = multiprocessing.Event()
    writer = multiprocessing.get_context("fork").Process(target=_publish_forever, args=(path, stop))
    writer.start()
    try:
        last_counter = 0
        checked = 0
        while checked < 100_000 and writer.is_alive():
            snap = reader.snapshot()
            assert snap.state == STATE_OPEN and snap.owner_pid == os.getpid() and snap.generation == 7, snap
            counter = reader.counter()
            assert counter >= last_counter
            last_counter = counter
            checked += 1
        assert checked == 100_000
    finally:
        stop.set()
        writer.join(10)
        reader.close()
        owner.close()
