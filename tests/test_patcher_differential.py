"""Differential property test: random operation sequences give identical results on a mount and locally.

Each step runs the same Python call (``open``/``os.*``/``shutil``) against a local temporary
directory and against a mount, and requires the same return value or the same exception type, errno
and (root-relative) file names. At the end the two trees — and the agent's own directory — must
hold the same entries and bytes. Tiny pieces and write chunks make small files exercise multi-piece
reads, readahead and chunked writes (with payloads in flight while one handle seeks back and
rewrites); names with ``..`` exercise the kernel-like check that the
component before a ``..`` is a directory.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fluxon_fs.patcher import MountOptions, process_interceptor
from tests.support.mount_harness import mounted_export

NAMES = st.sampled_from(
    ["a", "b", "d", "d/a", "d/b", "d/e", "d/e/a", "x/y", "d/../b", "d/e/../a", "x/../a", "a/../d/b"]
)
PAYLOADS = st.sampled_from([b"same-size 1", b"same-size 2"]) | st.binary(max_size=300)  # collisions too
SIZES = st.integers(min_value=0, max_value=400)
FILLS = st.builds(lambda size, byte: bytes([byte]) * size, st.integers(0, 300), st.integers(1, 255))
"""Payloads of one repeated non-zero byte: a rewrite is visible wherever it lands."""
HANDLE_STEPS = st.one_of(
    st.tuples(st.just("write"), FILLS),
    st.tuples(st.just("seek"), SIZES),
    st.tuples(st.just("truncate"), SIZES),
    st.tuples(st.just("flush")),
)
OPTIONS = MountOptions(piece_bytes=64, readahead_pieces=2, write_chunk_bytes=100, write_inflight_bytes=200)


class EveryOtherWriteLate:
    """The agent's ops, with every other background ``session_write`` answered late, as by a busy agent.

    Payloads in flight then land out of order (a payload the writer's own thread sends is never
    late, so it overtakes the background ones); only a writer that waits for an overlapping
    payload before sending the next keeps the later bytes on top. (The delay is simulated latency,
    not synchronisation: nothing waits for it.)
    """

    LATE_S = 0.002

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._writes = itertools.count()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def session_write(self, session_id: str, offset: int, data: Any) -> None:
        if threading.current_thread() is not threading.main_thread() and next(self._writes) % 2 == 0:
            time.sleep(self.LATE_S)
        self.inner.session_write(session_id, offset, data)


def tree(root: str) -> dict[str, bytes | None]:
    """Every entry below ``root``: file bytes, or None for a directory."""
    found: dict[str, bytes | None] = {}
    for top, dirs, files in os.walk(root):
        relative = os.path.relpath(top, root)
        for name in dirs:
            found[os.path.normpath(os.path.join(relative, name))] = None
        for name in files:
            with open(os.path.join(top, name), "rb") as f:
                found[os.path.normpath(os.path.join(relative, name))] = f.read()
    return found


class MountMatchesLocal(RuleBasedStateMachine):
    """Same operations on a local directory and on a mount."""

    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="fxdiff", dir="/tmp"))
        (self.base / "local").mkdir()
        self.stack = ExitStack()
        self.mounted = self.stack.enter_context(mounted_export(self.base, options=OPTIONS))
        self.mounted.ops.inner = EveryOtherWriteLate(self.mounted.ops.inner)
        self.roots = (str(self.base / "local"), self.mounted.mount)

    def teardown(self) -> None:
        try:
            assert tree(self.roots[0]) == tree(self.roots[1]) == tree(self.mounted.root)
        finally:
            self.stack.close()
            shutil.rmtree(self.base)

    def same(self, action: Callable[..., Any], *relpaths: str, **kwargs: Any) -> Any:
        """Run ``action(*paths, **kwargs)`` on both sides; both must end the same way."""
        outcomes = [self._outcome(root, action, relpaths, kwargs) for root in self.roots]
        assert outcomes[0] == outcomes[1], (
            f"{action.__name__}{relpaths} {kwargs}: local {outcomes[0]} mount {outcomes[1]}"
        )
        return outcomes[0]

    @staticmethod
    def _outcome(root: str, action: Callable[..., Any], relpaths: tuple[str, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return ("ok", action(*(os.path.join(root, p) for p in relpaths), **kwargs))
        except OSError as exc:
            names = [os.path.relpath(n, root) if isinstance(n, str) else n for n in (exc.filename, exc.filename2)]
            return ("error", type(exc).__name__, exc.errno, *names)

    # -- files ----------------------------------------------------------------------------------

    @rule(path=NAMES, data=PAYLOADS, mode=st.sampled_from(["wb", "ab", "xb", "w", "a"]))
    def write(self, path: str, data: bytes, mode: str) -> None:
        def write(p: str) -> int:
            if "b" in mode:
                with open(p, mode) as f:
                    return f.write(data)
            with open(p, mode, encoding="latin-1", newline="") as text:
                return text.write(data.decode("latin-1"))

        self.same(write, path)

    @rule(path=NAMES)
    def read(self, path: str) -> None:
        def read(p: str) -> bytes:
            with open(p, "rb") as f:
                return f.read()

        self.same(read, path)

    @rule(path=NAMES, offset=SIZES, size=SIZES, buffering=st.sampled_from([0, -1]))
    def read_range(self, path: str, offset: int, size: int, buffering: int) -> None:
        def read_range(p: str) -> tuple[bytes, int]:
            with open(p, "rb", buffering=buffering) as f:
                f.seek(offset)
                return f.read(size), f.tell()

        self.same(read_range, path)

    @rule(path=NAMES)
    def read_lines(self, path: str) -> None:
        def read_lines(p: str) -> list[str]:
            with open(p, encoding="latin-1") as f:
                return list(f)

        self.same(read_lines, path)

    @rule(path=NAMES, offset=SIZES, data=PAYLOADS, mode=st.sampled_from(["r+b", "a+b", "w+b"]))
    def update(self, path: str, offset: int, data: bytes, mode: str) -> None:
        def update(p: str) -> tuple[bytes, int]:
            with open(p, mode) as f:
                f.seek(offset)
                f.write(data)
                position = f.tell()
                f.seek(0)
                return f.read(), position

        self.same(update, path)

    @rule(
        path=NAMES,
        mode=st.sampled_from(["wb", "r+b", "ab", "w+b"]),
        buffering=st.sampled_from([0, -1]),
        steps=st.lists(HANDLE_STEPS, max_size=12),
    )
    def write_through_one_handle(self, path: str, mode: str, buffering: int, steps: list[tuple[Any, ...]]) -> None:
        """Writes, seeks and truncates on one open file: later bytes win over payloads still in flight."""

        def run(p: str) -> list[int | None]:
            with open(p, mode, buffering=buffering) as f:
                results: list[int | None] = []
                for step in steps:
                    results.append(getattr(f, step[0])(*step[1:]))
                results.append(f.tell())
                return results

        self.same(run, path)

    @rule(path=NAMES, size=SIZES)
    def truncate(self, path: str, size: int) -> None:
        self.same(os.truncate, path, length=size)

    # -- namespace ------------------------------------------------------------------------------

    @rule(path=NAMES)
    def mkdir(self, path: str) -> None:
        self.same(os.mkdir, path)

    @rule(path=NAMES, exist_ok=st.booleans())
    def makedirs(self, path: str, exist_ok: bool) -> None:
        self.same(os.makedirs, path, exist_ok=exist_ok)

    @rule(path=NAMES)
    def rmdir(self, path: str) -> None:
        self.same(os.rmdir, path)

    @rule(path=NAMES)
    def unlink(self, path: str) -> None:
        self.same(os.unlink, path)

    @rule(path=NAMES)
    def rmtree(self, path: str) -> None:
        self.same(shutil.rmtree, path)

    @rule(src=NAMES, dst=NAMES, how=st.sampled_from(["rename", "replace"]))
    def rename(self, src: str, dst: str, how: str) -> None:
        self.same(getattr(os, how), src, dst)  # looked up now: the installed function

    # -- metadata -------------------------------------------------------------------------------

    @rule(path=NAMES)
    def listdir(self, path: str) -> None:
        self.same(lambda p: sorted(os.listdir(p)), path)

    @rule(path=NAMES)
    def scandir(self, path: str) -> None:
        def scan(p: str) -> list[tuple[str, bool, bool, int | None]]:
            with os.scandir(p) as entries:
                return sorted(
                    (e.name, e.is_dir(), e.is_file(), e.stat().st_size if e.is_file() else None) for e in entries
                )

        self.same(scan, path)

    @rule(path=NAMES)
    def stat(self, path: str) -> None:
        def stat(p: str) -> tuple[str, int | None]:
            st_result = os.stat(p)
            return ("dir", None) if os.path.isdir(p) else ("file", st_result.st_size)

        self.same(stat, path)
        self.same(lambda p: (os.path.exists(p), os.path.isfile(p), os.path.isdir(p)), path)

    @invariant()
    def walks_agree(self) -> None:
        relative = [
            sorted((os.path.relpath(top, root), sorted(dirs), sorted(files)) for top, dirs, files in os.walk(root))
            for root in self.roots
        ]
        assert relative[0] == relative[1]


TestMountMatchesLocal = MountMatchesLocal.TestCase
TestMountMatchesLocal.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def setup_module() -> None:
    process_interceptor().install()  # once for the module: each example's mount only counts a user


def teardown_module() -> None:
    process_interceptor().uninstall()


def test_one_handle_writing_seeking_and_truncating_matches_a_local_file(tmp_path: Path) -> None:
    """Random writes, seeks and truncates on one open file, with payloads landing out of order."""
    with mounted_export(tmp_path, options=OPTIONS) as mnt:
        mnt.ops.inner = EveryOtherWriteLate(mnt.ops.inner)
        paths = (str(tmp_path / "local.bin"), mnt.path("f.bin"))

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            initial=PAYLOADS,
            mode=st.sampled_from(["wb", "r+b", "ab", "w+b", "a+b"]),
            buffering=st.sampled_from([0, -1]),
            steps=st.lists(HANDLE_STEPS, min_size=1, max_size=12),
        )
        def check(initial: bytes, mode: str, buffering: int, steps: list[tuple[Any, ...]]) -> None:
            outcomes = []
            for path in paths:
                with open(path, "wb") as f:
                    f.write(initial)
                with open(path, mode, buffering=buffering) as f:
                    results = [getattr(f, step[0])(*step[1:]) for step in steps]
                    results.append(f.tell())
                with open(path, "rb") as f:
                    outcomes.append((results, f.read()))
            assert outcomes[0] == outcomes[1]
            assert mnt.real("f.bin").read_bytes() == outcomes[0][1]

        check()
