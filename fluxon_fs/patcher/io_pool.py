"""The process-wide thread pool that runs readahead and background writes of mounted files."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

IO_POOL_THREADS = 8

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def io_pool() -> ThreadPoolExecutor:
    """The shared pool, created on first use (and again in a forked child)."""
    global _pool
    pool = _pool
    if pool is None:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=IO_POOL_THREADS, thread_name_prefix="fluxon-fs-io")
            pool = _pool
    return pool


def _forget_pool_in_child() -> None:
    # A forked child inherits the pool object but none of its threads.
    global _pool, _lock
    _pool = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)
