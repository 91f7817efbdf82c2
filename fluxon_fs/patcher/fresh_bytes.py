"""A large ``bytes`` result filled in place, in memory backed by huge pages where the kernel allows.

Why this exists: ``read()`` of a whole large file must return a new ``bytes`` (``BufferedReader``
refuses anything else from ``readall()``). Building it with ``b"".join`` of the pieces writes every
byte into freshly mapped memory, one 4 KiB page fault at a time, and on the VMs this runs on a
fault costs far more than the copy (64 MiB: 16,385 faults, ~55 ms of CPU, against ~10 ms for the
same copy into memory already touched). A local ``read()`` pays the same faults. Advising the
kernel to back the object's interior with transparent huge pages (``MADV_HUGEPAGE``, honoured
where ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise``) turns those
faults into one per 2 MiB: ~550 faults and ~18 ms for 64 MiB. The advice has to be given before
the first byte is written, so the object is created uninitialised
(``PyBytes_FromStringAndSize(NULL, n)``, what CPython's own ``FileIO.readall`` does in C) and
filled through a view of its buffer before anyone else can see it. That is CPython's C API, hence
the guard below; the project runs on CPython only.

The writable view never leaves :func:`filled_bytes`: it is released before the object is returned,
so the result is as immutable as any other ``bytes``. A ``fill`` that raises discards the object.
Results this large are normally mapped by ``malloc`` on their own and unmapped when freed; one that
``malloc`` carved from its heap leaves the advice on that address range, which only lets the heap
use huge pages there (what glibc's own ``glibc.malloc.hugetlb`` tunable does for the whole heap).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections.abc import Callable

if sys.implementation.name != "cpython":  # pragma: no cover - the project supports CPython only
    raise ImportError("fluxon_fs.patcher.fresh_bytes fills bytes objects through CPython's C API")

HUGE_PAGE_BYTES = 2 * 1024 * 1024
"""The transparent huge page size on x86-64 and arm64 (4 KiB base pages)."""

MIN_FRESH_BYTES = 2 * HUGE_PAGE_BYTES
"""Below this a result gains nothing from huge pages (no aligned huge page need fit inside)."""

_new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
_new_bytes.restype = ctypes.py_object
_new_bytes.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
_bytes_buffer = ctypes.pythonapi.PyBytes_AsString
_bytes_buffer.restype = ctypes.c_void_p
_bytes_buffer.argtypes = [ctypes.py_object]
_libc = ctypes.CDLL(None, use_errno=True)
_madvise = _libc.madvise
_madvise.restype = ctypes.c_int
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MADV_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)


def _advise_huge_pages(address: int, size: int) -> None:
    """Ask for huge pages over the 2 MiB-aligned part of ``[address, address+size)``; advice only."""
    if _MADV_HUGEPAGE is None:
        return
    start = -(-address // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    end = (address + size) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
    if end > start:
        _madvise(start, end - start, _MADV_HUGEPAGE)  # an error (no THP in this kernel) changes nothing


def filled_bytes(size: int, fill: Callable[[memoryview], int]) -> bytes:
    """A new ``bytes`` of at most ``size`` bytes whose content ``fill`` writes.

    ``fill`` gets a writable byte view of exactly ``size`` bytes, must not keep it, and returns
    how many bytes from the start it wrote (fewer at an early end of file): the result holds
    those. ``size`` must be at least :data:`MIN_FRESH_BYTES` (smaller results are built normally).
    """
    if size < MIN_FRESH_BYTES:
        raise ValueError(f"filled_bytes is for results of at least {MIN_FRESH_BYTES} bytes, got {size}")
    result: bytes = _new_bytes(None, size)  # uninitialised and not shared: size > 1 is never a cached object
    address = _bytes_buffer(result)
    _advise_huge_pages(address, size)
    view = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
    try:
        written = fill(view)
    finally:
        view.release()
    if not 0 <= written <= size:
        raise ValueError(f"fill reported {written} bytes written into a {size}-byte result")
    if written < size:
        return result[:written]
    return result
