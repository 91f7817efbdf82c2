"""Path confinement of the fs agent: nothing outside an export root is ever reached."""

from __future__ import annotations

import errno
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.export.serving.confinement import (
    MAX_SYMLINKS,
    ExportRoot,
    guard_resolved_paths,
    lstat_no_link,
    split_relpath,
)
from fluxon_fs.export.serving.local_ops import LocalExportOps

SECRET = b"SECRET outside the export"


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[tuple[Path, Path, LocalExportOps]]:
    """root/ (the export) next to outside/ holding a secret file and a directory."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (outside / "dir").mkdir()
    (outside / "dir" / "f").write_bytes(SECRET)
    (root / "a").mkdir()
    (root / "a" / "file").write_bytes(b"inside")
    (root / "b").mkdir()
    ops = LocalExportOps(str(root))
    yield root, outside, ops
    ops.close()


def assert_escape(exc_info: pytest.ExceptionInfo[BaseException], relpath: str) -> None:
    exc = exc_info.value
    assert isinstance(exc, PermissionError)
    assert exc.errno == errno.EACCES
    assert exc.filename == relpath
    assert "escapes the export root" in str(exc)


def outside_snapshot(outside: Path) -> dict[str, tuple[bytes | None, int, int]]:
    """Content, mode and mtime of everything under outside/ (to prove nothing changed)."""
    snap = {}
    for path in sorted(outside.rglob("*")):
        st = path.lstat()
        snap[str(path.relative_to(outside))] = (
            path.read_bytes() if path.is_file() else None,
            st.st_mode,
            st.st_mtime_ns,
        )
    return snap


@pytest.mark.parametrize("relpath", ["..", "../outside/secret", "a/../../outside/secret", "a/..", "a/../a/file"])
def test_dotdot_components_are_refused(layout, relpath: str) -> None:
    _, _, ops = layout
    with pytest.raises(PermissionError) as info:
        ops.stat(relpath)
    assert_escape(info, relpath)


def test_absolute_paths_are_refused(layout) -> None:
    root, outside, ops = layout
    for relpath in ("/etc/passwd", str(outside / "secret"), str(root / "a" / "file")):
        with pytest.raises(PermissionError) as info:
            ops.read_chunk(relpath, 0, 100)
        assert_escape(info, relpath)


def test_nul_byte_is_a_value_error_like_os_stat(layout) -> None:
    _, _, ops = layout
    with pytest.raises(ValueError, match="null byte"):
        ops.stat("a/fi\0le")


def test_dot_and_empty_components_are_normalised(layout) -> None:
    _, _, ops = layout
    assert split_relpath("./a//file/") == ["a", "file"]
    assert split_relpath("") == split_relpath(".") == split_relpath("/".join(["."] * 3)) == []
    assert ops.read_chunk("./a//file", 0, 100)[1] == b"inside"
    assert ops.stat(".").is_dir()


def test_relative_symlink_inside_root_is_followed(layout) -> None:
    root, _, ops = layout
    os.symlink("../a/file", root / "b" / "to_file")
    os.symlink("../a", root / "b" / "to_a")
    os.symlink(".", root / "self")
    os.symlink("b/to_a", root / "chain")
    assert ops.read_chunk("b/to_file", 0, 100)[1] == b"inside"
    assert ops.read_chunk("b/to_a/file", 0, 100)[1] == b"inside"
    assert ops.read_chunk("self/self/a/file", 0, 100)[1] == b"inside"
    assert ops.read_chunk("chain/file", 0, 100)[1] == b"inside"
    assert [e.name for e in ops.list_dir("chain")] == ["file"]
    assert ops.stat("b/to_file").is_file()
    assert not ops.stat("b/to_file", follow_symlinks=False).is_file()
    assert ops.stat("self").ino == (root).stat().st_ino


def test_dotdot_in_a_deep_link_steps_back_along_the_walk(layout) -> None:
    root, _, ops = layout
    (root / "a" / "b" / "c").mkdir(parents=True)
    os.symlink("../../file", root / "a" / "b" / "c" / "up2")
    os.symlink("../../../b", root / "a" / "b" / "c" / "up3")
    os.symlink("../../../..", root / "a" / "b" / "c" / "up4")
    assert ops.read_chunk("a/b/c/up2", 0, 10)[1] == b"inside"
    assert ops.stat("a/b/c/up3").ino == (root / "b").stat().st_ino
    with pytest.raises(PermissionError) as info:
        ops.stat("a/b/c/up4")
    assert_escape(info, "a/b/c/up4")


def test_symlink_to_the_root_from_a_subdirectory_via_dotdot(layout) -> None:
    root, _, ops = layout
    os.symlink("..", root / "a" / "up")
    assert ops.stat("a/up").ino == root.stat().st_ino
    assert ops.read_chunk("a/up/a/file", 0, 10)[1] == b"inside"
    assert {e.name for e in ops.list_dir("a/up")} == {"a", "b"}


def test_absolute_symlink_is_refused_even_when_it_points_inside(layout) -> None:
    root, outside, ops = layout
    os.symlink(str(outside / "secret"), root / "abs_out")
    os.symlink(str(root / "a" / "file"), root / "abs_in")
    os.symlink(str(outside / "dir"), root / "abs_dir")
    for relpath in ("abs_out", "abs_in", "abs_dir/f"):
        with pytest.raises(PermissionError) as info:
            ops.read_chunk(relpath, 0, 100)
        assert_escape(info, relpath)
        assert "absolute target" in str(info.value)


def test_relative_symlink_escaping_is_refused_for_every_op(layout) -> None:
    root, outside, ops = layout
    os.symlink("../../outside/secret", root / "a" / "esc_file")
    os.symlink("../outside/dir", root / "esc_dir")
    os.symlink("../outside/new_file", root / "esc_dangling")
    before = outside_snapshot(outside)
    attempts: list[tuple[str, Callable[[], object]]] = [
        ("a/esc_file", lambda: ops.stat("a/esc_file")),
        ("a/esc_file", lambda: ops.read_chunk("a/esc_file", 0, 100)),
        ("a/esc_file", lambda: ops.write_chunk("a/esc_file", 0, b"x")),
        ("a/esc_file", lambda: ops.truncate("a/esc_file", 0)),
        ("a/esc_file", lambda: ops.chmod("a/esc_file", 0o777)),
        ("a/esc_file", lambda: ops.utime("a/esc_file", (1, 1))),
        ("a/esc_file", lambda: ops.session_open("a/esc_file", create=True, exclusive=False, truncate=True)),
        ("esc_dir", lambda: ops.list_dir("esc_dir")),
        ("esc_dir/f", lambda: ops.read_chunk("esc_dir/f", 0, 100)),
        ("esc_dir/new", lambda: ops.mkdir("esc_dir/new")),
        ("esc_dir/f", lambda: ops.unlink("esc_dir/f")),
        ("esc_dir/f", lambda: ops.rename("esc_dir/f", "a/stolen")),
        ("esc_dangling", lambda: ops.session_open("esc_dangling", create=True, exclusive=False, truncate=False)),
    ]
    for relpath, attempt in attempts:
        with pytest.raises(PermissionError) as info:
            attempt()
        assert_escape(info, relpath)
    assert outside_snapshot(outside) == before
    assert not (root / "a" / "stolen").exists()
    # The link itself lives inside the root: lstat and unlink address the link, not the target.
    assert not ops.stat("a/esc_file", follow_symlinks=False).is_file()
    ops.unlink("a/esc_file")
    assert (outside / "secret").read_bytes() == SECRET


def test_rename_destination_through_escaping_link_is_refused(layout) -> None:
    root, outside, ops = layout
    os.symlink("../outside", root / "out")
    with pytest.raises(PermissionError) as info:
        ops.rename("a/file", "out/moved")
    assert_escape(info, "out/moved")
    assert (root / "a" / "file").read_bytes() == b"inside"
    assert not (outside / "moved").exists()


def test_symlink_loops_raise_eloop(layout) -> None:
    root, _, ops = layout
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("self_loop", root / "self_loop")
    for relpath in ("loop_a", "self_loop", "loop_a/x"):
        with pytest.raises(OSError) as info:
            ops.stat(relpath)
        assert info.value.errno == errno.ELOOP
        assert info.value.filename == relpath


def test_symlink_chain_longer_than_the_limit_raises_eloop(layout) -> None:
    root, _, ops = layout
    os.symlink("a/file", root / "link0")
    for i in range(1, MAX_SYMLINKS + 1):
        os.symlink(f"link{i - 1}", root / f"link{i}")
    assert ops.read_chunk(f"link{MAX_SYMLINKS - 1}", 0, 10)[1] == b"inside"
    with pytest.raises(OSError) as info:
        ops.read_chunk(f"link{MAX_SYMLINKS}", 0, 10)
    assert info.value.errno == errno.ELOOP


def test_dangling_link_inside_root_creates_its_target_like_open_does(layout) -> None:
    root, _, ops = layout
    os.symlink("b/created", root / "dangling")
    info = ops.session_open("dangling", create=True, exclusive=False, truncate=False)
    ops.session_write(info.session_id, 0, b"via link")
    ops.session_finalize(info.session_id)
    assert (root / "b" / "created").read_bytes() == b"via link"
    with pytest.raises(FileExistsError):
        ops.session_open("dangling", create=True, exclusive=True, truncate=False)


def test_export_root_opened_once_and_closed(tmp_path: Path) -> None:
    root = ExportRoot(str(tmp_path))
    fd = root.root_fd
    assert os.fstat(fd).st_ino == tmp_path.stat().st_ino
    root.close()
    root.close()
    with pytest.raises(ValueError, match="closed"):
        root.resolve("", lambda d, n: None, follow_final=False)
    with pytest.raises(ValueError, match="absolute"):
        ExportRoot("relative/dir")


def _flip_forever(flip: Callable[[], None], stop: threading.Event, flips: list[int]) -> None:
    while not stop.is_set():
        flip()
        flips[0] += 1


def test_race_swapping_components_for_outside_symlinks_never_escapes(layout) -> None:
    """A thread flips a directory and a file between real entries and symlinks to outside while
    other threads hammer reads and writes through them; nothing outside is ever read or changed."""
    root, outside, ops = layout
    (root / "d").mkdir()
    (root / "d" / "f").write_bytes(b"inside")
    (root / "g").write_bytes(b"inside")
    before = outside_snapshot(outside)

    def flip() -> None:
        # d: directory <-> absolute symlink to outside/dir; g: file <-> relative symlink to outside/secret
        os.rename(root / "d", root / "d_away")
        os.symlink(str(outside / "dir"), root / "d")
        os.rename(root / "g", root / "g_away")
        os.symlink("../outside/secret", root / "g")
        os.unlink(root / "d")
        os.rename(root / "d_away", root / "d")
        os.unlink(root / "g")
        os.rename(root / "g_away", root / "g")

    stop = threading.Event()
    flips = [0]
    outcomes: dict[str, int] = {"inside": 0, "error": 0}
    leaks: list[str] = []

    def hammer() -> None:
        while not stop.is_set():
            for relpath in ("d/f", "g"):
                for attempt in (
                    lambda p=relpath: ops.read_chunk(p, 0, 100)[1],
                    lambda p=relpath: ops.write_chunk(p, 0, b"inside") and b"inside",
                    lambda p=relpath: ops.chmod(p, 0o644) or b"inside",
                    lambda p=relpath: ops.truncate(p, 6) and b"inside",
                ):
                    try:
                        data = attempt()
                    except OSError:
                        outcomes["error"] += 1
                        continue
                    if data != b"inside":
                        leaks.append(f"{relpath}: {data!r}")
                    outcomes["inside"] += 1

    flipper = threading.Thread(target=_flip_forever, args=(flip, stop, flips))
    workers = [threading.Thread(target=hammer) for _ in range(2)]
    flipper.start()
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline and not leaks:
            stop.wait(0.05)
    finally:
        stop.set()
        flipper.join()
        for worker in workers:
            worker.join()
    assert not leaks
    assert outside_snapshot(outside) == before
    # Both states were exercised: some calls went through, some were refused mid-flip.
    assert flips[0] > 10 and outcomes["inside"] > 0 and outcomes["error"] > 0, (flips, outcomes)


# Random trees: the resolver agrees with the kernel wherever the kernel's walk stays inside.

_NAMES = ("a", "b")
# Precomputed choices keep data generation cheap: one draw per entry path and one per kind.
_ENTRY_PATHS = ["/".join(parts) for depth in (1, 2, 3) for parts in itertools.product(_NAMES, repeat=depth)]
_LINK_TARGETS = [
    "/".join(parts)
    for depth in (1, 2, 3, 4)
    for parts in itertools.product(("..", ".", *_NAMES, "outside"), repeat=depth)
]
_tree = st.lists(
    st.tuples(
        st.sampled_from(_ENTRY_PATHS),
        st.one_of(st.sampled_from(["dir", "dir", "file"]), st.sampled_from(_LINK_TARGETS)),
    ),
    max_size=14,
)


def _build(base: Path, entries: list[tuple[str, str]]) -> None:
    """Create each entry, its missing parents as directories; skip it under a file or a link."""
    for relpath, kind in entries:
        *parents, name = relpath.split("/")
        directory = base
        for part in parents:
            directory = directory / part
            if not os.path.lexists(directory):
                directory.mkdir()
            if directory.is_symlink() or not directory.is_dir():
                break
        else:
            path = directory / name
            if os.path.lexists(path):
                continue
            if kind == "dir":
                path.mkdir()
            elif kind == "file":
                path.write_bytes(relpath.encode())
            else:
                os.symlink(kind, path)


def _kernel_walk_stays_inside(root: Path, relpath: str) -> bool:
    """True when resolving ``relpath`` never enters a directory outside ``root`` (a slow reference walk)."""
    current = root
    pending = relpath.split("/")
    for _ in range(200):
        if not pending:
            return True
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if current == root:
                return False
            current = current.parent
            continue
        candidate = current / name
        if candidate.is_symlink():
            pending = os.readlink(candidate).split("/") + pending
            continue
        if not candidate.is_dir():
            return True  # the walk ends here (missing, or a file): it never left
        current = candidate
    return True  # a loop: the kernel gives ELOOP without leaving


@settings(max_examples=300, deadline=None)
@given(tree=_tree, outside_tree=_tree, data=st.data())
def test_resolution_matches_the_kernel_inside_the_root(tree, outside_tree, data) -> None:
    with tempfile.TemporaryDirectory(prefix="fxtree") as base:
        _compare_with_kernel(Path(base), tree, outside_tree, data)


def _compare_with_kernel(base: Path, tree: list[tuple[str, str]], outside_tree: list[tuple[str, str]], data) -> None:
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    _build(root, tree)
    _build(outside, outside_tree)
    # Mostly paths the tree created (possibly with one more component), so lookups get far.
    created = [relpath for relpath, _ in tree] or ["a"]
    relpath = data.draw(st.sampled_from(created)) + data.draw(st.sampled_from(["", "", "/a", "/b"]))
    with ExportRoot(str(root)) as export_root:
        try:
            ours = ("inode", export_root.resolve(relpath, lstat_no_link, follow_final=True).st_ino)
        except OSError as exc:
            ours = ("errno", exc.errno)
    try:
        kernel = ("inode", os.stat(root / relpath).st_ino)
    except OSError as exc:
        kernel = ("errno", exc.errno)
    if ours == ("errno", errno.EACCES):
        assert not _kernel_walk_stays_inside(root, relpath)
    else:
        assert ours == kernel
        assert _kernel_walk_stays_inside(root, relpath)


def test_guard_sees_the_real_path_only_after_a_symlink(layout) -> None:
    root, _, ops = layout
    os.symlink("../a", root / "b" / "to_a")
    os.symlink("..", root / "b" / "up")
    seen: list[str] = []
    with guard_resolved_paths(seen.append):
        ops.stat("a/file")
        assert seen == []  # no link followed: the requested path is the real one
        ops.read_chunk("b/to_a/file", 0, 1)
        ops.list_dir("b/up")
        ops.unlink("b/to_a/file")
    assert seen == ["a/file", "", "a/file"]
    ops.stat("b/to_a")  # outside the context nothing is called
    assert len(seen) == 3

    def refuse(real: str) -> None:
        raise PermissionDeniedError(f"permission denied: {real}")

    (root / "a" / "file").write_bytes(b"again")  # unlinked above
    with guard_resolved_paths(refuse), pytest.raises(PermissionDeniedError, match="a/file"):
        ops.write_chunk("b/to_a/file", 0, b"x")
    assert (root / "a" / "file").read_bytes() == b"again"
