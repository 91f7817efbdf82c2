"""Large ``read()`` results built in place (``fluxon_fs.patcher.fresh_bytes``): content, sizes, failures.

The module writes into a new ``bytes`` object through CPython's C API before returning it, so
these tests check that every byte the caller gets is one the fill wrote, at many sizes and
offsets, directly and through a mount's ``read()``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxon_fs.patcher import MountOptions
from fluxon_fs.patcher.fresh_bytes import MIN_FRESH_BYTES, filled_bytes
from tests.support.mount_harness import mounted_export

MiB = 1024 * 1024
PIECE = 256 * 1024


def _pattern(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _fill_with(source: bytes, written: int, step: int):  # type: ignore[no-untyped-def]
    def fill(view: memoryview) -> int:
        assert not view.readonly and len(view) >= written
        for start in range(0, written, step):
            view[start : min(start + step, written)] = source[start : min(start + step, written)]
        return written

    return fill


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(MIN_FRESH_BYTES, MIN_FRESH_BYTES + 3 * MiB + 4099),
    shortfall=st.one_of(st.just(0), st.integers(0, 5 * MiB)),
    step=st.sampled_from([4096, 65_537, MiB, 3 * MiB + 1]),
    seed=st.integers(0, 2**32),
)
def test_the_result_holds_exactly_what_the_fill_wrote(size: int, shortfall: int, step: int, seed: int) -> None:
    source = _pattern(size, seed)
    written = max(0, size - shortfall)
    result = filled_bytes(size, _fill_with(source, written, step))
    assert type(result) is bytes
    assert len(result) == written
    assert result == source[:written]


def test_results_never_share_memory() -> None:
    first = filled_bytes(MIN_FRESH_BYTES, _fill_with(b"\x01" * MIN_FRESH_BYTES, MIN_FRESH_BYTES, MiB))
    second = filled_bytes(MIN_FRESH_BYTES, _fill_with(b"\x02" * MIN_FRESH_BYTES, MIN_FRESH_BYTES, MiB))
    assert first == b"\x01" * MIN_FRESH_BYTES
    assert second == b"\x02" * MIN_FRESH_BYTES
    assert memoryview(first).readonly


def test_a_failing_fill_returns_nothing() -> None:
    def fill(view: memoryview) -> int:
        view[:10] = b"0123456789"
        raise OSError("the agent went away")

    with pytest.raises(OSError, match="agent went away"):
        filled_bytes(MIN_FRESH_BYTES, fill)


@pytest.mark.parametrize("claimed", [-1, MIN_FRESH_BYTES + 1])
def test_a_fill_claiming_bytes_outside_the_result_is_refused(claimed: int) -> None:
    with pytest.raises(ValueError, match="fill reported"):
        filled_bytes(MIN_FRESH_BYTES, lambda view: claimed)


def test_small_results_are_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        filled_bytes(MIN_FRESH_BYTES - 1, lambda view: 0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.integers(MIN_FRESH_BYTES - PIECE, MIN_FRESH_BYTES + 5 * PIECE),
    start=st.integers(0, 3 * PIECE),
    length=st.one_of(st.none(), st.integers(MIN_FRESH_BYTES - 3, MIN_FRESH_BYTES + 4 * PIECE)),
)
def test_large_reads_on_a_mount_return_the_file(tmp_path: Path, size: int, start: int, length: int | None) -> None:
    data = os.urandom(size)
    options = MountOptions(piece_bytes=PIECE, readahead_pieces=3)
    base = tmp_path / os.urandom(6).hex()  # one fresh export per example
    base.mkdir()
    with mounted_export(base, options=options) as mnt:
        mnt.real("big.bin").write_bytes(data)
        with open(mnt.path("big.bin"), "rb") as f:
            assert f.read() == data  # readall: one result of the whole file
        with open(mnt.path("big.bin"), "rb", buffering=0) as raw:
            raw.seek(start)
            expected = data[start:] if length is None else data[start : start + length]
            assert raw.read(-1 if length is None else length) == expected
            assert raw.read(1) == (b"" if length is None else data[start + length : start + length + 1])
