"""Building and comparing directory trees in tests."""

from __future__ import annotations

import os
import random
from pathlib import Path


def make_tree(root: Path, *, files: int = 30, seed: int = 7, max_size: int = 50_000, empty_dirs: int = 2) -> None:
    """A reproducible tree of nested directories, files of varied sizes, and empty dirs/files."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        depth = rng.randint(0, 3)
        parts = [f"d{rng.randint(0, 3)}" for _ in range(depth)]
        directory = root.joinpath(*parts)
        directory.mkdir(parents=True, exist_ok=True)
        size = 0 if i % 10 == 0 else rng.randint(1, max_size)
        path = directory / f"f{i}.bin"
        path.write_bytes(rng.randbytes(size))
        os.chmod(path, 0o640 if i % 3 else 0o755)
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i * 1000))
    for i in range(empty_dirs):
        (root / f"empty{i}").mkdir(exist_ok=True)


def tree_digest(root: Path) -> dict[str, tuple[str, int, int, bytes]]:
    """relpath -> (kind, mode, mtime_ns, content) for files; dirs carry only kind and mode."""
    result: dict[str, tuple[str, int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = Path(dirpath) / name
            result[str(path.relative_to(root))] = ("d", path.stat().st_mode & 0o7777, 0, b"")
        for name in filenames:
            path = Path(dirpath) / name
            st = path.stat()
            result[str(path.relative_to(root))] = ("f", st.st_mode & 0o7777, st.st_mtime_ns, path.read_bytes())
    return result


def assert_same_tree(source: Path, target: Path) -> None:
    """Byte-for-byte, mode and mtime equality of two trees."""
    left, right = tree_digest(source), tree_digest(target)
    assert sorted(left) == sorted(right), f"paths differ: {sorted(set(left) ^ set(right))[:10]}"
    for path in left:
        assert left[path] == right[path], f"{path} differs"
