"""Differential test against a real agent process: random operation sequences give identical results
on the mount and on a local directory.

Each step runs the same ``open``/``os.*``/``shutil``/``pathlib`` call on both sides and requires the
same return value, or the same exception type, errno and (root-relative) file names. After each
example the local tree, the tree seen through the mount and the agent's own directory must hold the
same entries and bytes. Every example works in a fresh directory of the export, created and removed
on the agent's side, so nothing the mount cached for an earlier example can matter.

:class:`DotDotMatchesLocal` does the same with paths whose ``..`` components climb within the mount,
out of it to a local directory beside it and back in; the local side mirrors that layout (the
test's directory inside a local ``mnt`` directory with the same sibling), so a path means the same
place on either side. Each call spells its paths as str, bytes, ``Path`` or relative to a working
directory beside or at the mount.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import stat as stat_module
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from tests.support.mount_e2e import MountE2E, mount_e2e_fixture

e2e = mount_e2e_fixture()

NAMES = st.sampled_from(["a", "b", "d", "d/a", "d/b", "d/e", "d/e/a", "x/y"])
PAYLOADS = st.binary(max_size=300)
SIZES = st.integers(min_value=0, max_value=400)
MODES = st.sampled_from([0o700, 0o750, 0o755, 0o777])  # the owner keeps rwx: trees stay removable
TIMES_NS = st.integers(min_value=0, max_value=2**41)

# Over 10 s: ~3000 mirrored calls (each a few agent round trips) take 15-20 s here; keep it below a minute.
SETTINGS = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def tree(root: str) -> dict[str, tuple[int, bytes | None]]:
    """Every entry below ``root``: (permission bits, bytes) for files, (bits, None) for directories."""
    found: dict[str, tuple[int, bytes | None]] = {}
    for top, dirs, files in os.walk(root):
        relative = os.path.relpath(top, root)
        for name in dirs:
            path = os.path.join(top, name)
            found[os.path.normpath(os.path.join(relative, name))] = (stat_module.S_IMODE(os.stat(path).st_mode), None)
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                found[os.path.normpath(os.path.join(relative, name))] = (
                    stat_module.S_IMODE(os.stat(path).st_mode),
                    f.read(),
                )
    return found


class MountMatchesLocal(RuleBasedStateMachine):
    """Same operations on a local directory and on a directory of the mount."""

    def __init__(self, env: MountE2E) -> None:
        super().__init__()
        self.env = env
        name = f"ex-{uuid.uuid4().hex[:10]}"
        self.agent_root = env.real(name)
        self.agent_root.mkdir()  # agent side: the mount has never seen this path
        self.local_base = Path(tempfile.mkdtemp(prefix="fxd", dir="/tmp"))
        self.roots = (str(self.local_base), env.path(name))

    def teardown(self) -> None:
        try:
            local, mounted, agent = tree(self.roots[0]), tree(self.roots[1]), tree(str(self.agent_root))
            assert local == mounted, f"local {local}\nmount {mounted}"
            assert mounted == agent, f"mount {mounted}\nagent {agent}"
        finally:
            shutil.rmtree(self.agent_root)  # reset through the agent's directory
            shutil.rmtree(self.local_base)

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

    @initialize(a=PAYLOADS, da=PAYLOADS)
    def seed(self, a: bytes, da: bytes) -> None:
        """Start from a few entries (made through the mount, like every later step)."""
        self.same(lambda p: pathlib.Path(p).write_bytes(a), "a")
        self.same(os.makedirs, "d/e")
        self.same(lambda p: pathlib.Path(p).write_bytes(da), "d/a")

    # -- files ----------------------------------------------------------------------------------

    @rule(path=NAMES, data=PAYLOADS, mode=st.sampled_from(["wb", "ab", "xb", "w", "a", "x"]))
    def write(self, path: str, data: bytes, mode: str) -> None:
        def write(p: str) -> int:
            if "b" in mode:
                with open(p, mode) as f:
                    return f.write(data)
            with open(p, mode, encoding="latin-1", newline="\r\n") as text:
                return text.write(data.decode("latin-1"))

        self.same(write, path)

    @rule(path=NAMES, chunks=st.lists(PAYLOADS, min_size=1, max_size=3))
    def write_with_flushes(self, path: str, chunks: list[bytes]) -> None:
        def write(p: str) -> list[int]:
            sizes = []
            with open(p, "ab") as f:
                for chunk in chunks:
                    f.write(chunk)
                    f.flush()
                    sizes.append(os.path.getsize(p))
            return sizes

        self.same(write, path)

    @rule(path=NAMES)
    def read(self, path: str) -> None:
        self.same(lambda p: pathlib.Path(p).read_bytes(), path)

    @rule(path=NAMES, offset=SIZES, size=SIZES, buffering=st.sampled_from([0, -1]))
    def read_range(self, path: str, offset: int, size: int, buffering: int) -> None:
        def read_range(p: str) -> tuple[bytes, int, int]:
            with open(p, "rb", buffering=buffering) as f:
                f.seek(offset)
                data = f.read(size)
                return data, f.tell(), f.seek(0, os.SEEK_END)

        self.same(read_range, path)

    @rule(path=NAMES, newline=st.sampled_from([None, "", "\n", "\r\n"]))
    def read_text(self, path: str, newline: str | None) -> None:
        def read_lines(p: str) -> list[str]:
            with open(p, encoding="latin-1", newline=newline) as f:
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

    @rule(path=NAMES, size=SIZES)
    def truncate(self, path: str, size: int) -> None:
        self.same(os.truncate, path, length=size)

    @rule(src=NAMES, dst=NAMES)
    def copyfile(self, src: str, dst: str) -> None:
        def copyfile(s: str, d: str) -> str:
            return os.path.basename(shutil.copyfile(s, d))

        self.same(copyfile, src, dst)

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

    @rule(path=NAMES, mode=MODES)
    def chmod(self, path: str, mode: int) -> None:
        self.same(os.chmod, path, mode=mode)

    @rule(path=NAMES, atime=TIMES_NS, mtime=TIMES_NS)
    def utime(self, path: str, atime: int, mtime: int) -> None:
        def utime(p: str) -> int:
            try:
                os.utime(p, ns=(atime, mtime))
            except OSError as exc:
                # CPython's utime errors carry no file name; the mount's do (an xfail test in
                # test_mount_e2e.py tracks it): compare type and errno only.
                raise OSError(exc.errno, exc.strerror) from None
            return os.stat(p).st_mtime_ns

        self.same(utime, path)

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
        def stat(p: str) -> tuple[str, int, int | None]:
            result = os.stat(p)
            size = None if stat_module.S_ISDIR(result.st_mode) else result.st_size
            return stat_module.filemode(result.st_mode), result.st_nlink if size is not None else 0, size

        self.same(stat, path)
        self.same(lambda p: (os.path.exists(p), os.path.isfile(p), os.path.isdir(p), os.path.islink(p)), path)

    @invariant()
    def walks_agree(self) -> None:
        relative = [
            sorted((os.path.relpath(top, root), sorted(dirs), sorted(files)) for top, dirs, files in os.walk(root))
            for root in self.roots
        ]
        assert relative[0] == relative[1]


def test_mount_matches_local_directory(e2e: MountE2E) -> None:
    run_state_machine_as_test(lambda: MountMatchesLocal(e2e), settings=SETTINGS)


# Relative to the test's directory ``{root}`` (in ``mnt``), beside ``mnt`` the directory ``{side}``.
# Seeded: {root}/a, {root}/d/e/, {root}/d/a, {side}/s, {side}/t/, {side}/t/u.
IN_ROOT = [
    "a",
    "b",
    "d/a",
    "d/e",
    "d/../b",
    "d/e/../../a",
    "d/e/../f",
    "x/../a",  # ENOENT: '..' out of a missing directory
    "a/../d",  # ENOTDIR: '..' out of a file
    "../{root}/d/a",
    "d/../../{root}/a",
    "d/../../../mnt/{root}/b",
    "../../{side}/../mnt/{root}/d",
    "../../{side}/missing/../../mnt/{root}/a",  # ENOENT on the local side of the walk
    "../../{side}/s/../../mnt/{root}/a",  # ENOTDIR on the local side of the walk
]
BESIDE = [
    "../../{side}",
    "../../{side}/s",
    "../../{side}/v",
    "d/../../../{side}/s",
    "d/e/../../../../{side}/t",
    "d/e/../../../../{side}/t/u",
    "d/../../../{side}/t/",
    "d/../../../{side}/w",
    "a/../../../{side}/s",  # ENOTDIR
    "x/../../../{side}/s",  # ENOENT
    "x/../../../{side}/x/../s",  # ENOENT
    "../../{side}/t/../s",
    "../../{side}/t/u/../s",  # ENOTDIR in the local part
]
ROOT_AT = ("mnt", "{root}")
"""The test's directory, from the base."""
ONLY_CHILDREN = {(): ("mnt", "{side}"), ("mnt",): ("{root}",)}
"""Where a walk may go from the base and from ``mnt`` (they hold other tests' entries on the mount side)."""


def place(relpath: str) -> tuple[str, ...]:
    """Where ``relpath`` (from the test's directory) ends, lexically, from the base."""
    stack = list(ROOT_AT)
    for part in relpath.split("/"):
        if part == "..":
            stack = stack[:-1]
        elif part not in ("", "."):
            stack.append(part)
    return tuple(stack)


def random_walk(choices: list[int]) -> str:
    """A path from the test's directory: names and ``..`` in any order, never above the base."""
    parts: list[str] = []
    for choice in choices:
        here = place("/".join(parts))
        options = ONLY_CHILDREN.get(here) or (("a", "b", "d", "e", "x") if here[0] == "mnt" else ("s", "t", "u", "x"))
        options = (*options, "..", "..") if here else options  # climbing often enough to leave the mount
        parts.append(options[choice % len(options)])
    while place("/".join(parts)) in ONLY_CHILDREN:  # end where both sides hold the same entries
        parts.append(ONLY_CHILDREN[place("/".join(parts))][-1])
    return "/".join(parts)


DOT_NAMES = st.sampled_from(IN_ROOT + BESIDE) | st.lists(st.integers(0, 60), min_size=1, max_size=8).map(random_walk)
SAME_PLACE_PAIRS = st.tuples(DOT_NAMES, DOT_NAMES).filter(lambda pair: place(pair[0])[0] == place(pair[1])[0])
SPELLINGS = st.sampled_from(["str", "bytes", "path", "cwd beside mnt", "cwd at mnt"])
# 10-20 s here: 50 examples of 20 steps, each step a few calls on either side.
DOT_SETTINGS = settings(SETTINGS, max_examples=50, stateful_step_count=20)


@attrs.frozen
class Tree:
    """One side of :class:`DotDotMatchesLocal`: ``base`` holds ``mnt/<root>`` and ``<side>``."""

    base: str
    root: str
    side: str

    def spelled(self, relpath: str, spelling: str, names: dict[str, str]) -> tuple[str | None, Any]:
        """(working directory or None, argument) for ``relpath`` from the root."""
        relpath = relpath.format(**names)
        if spelling == "cwd beside mnt":
            return self.base, f"mnt/{names['root']}/{relpath}"
        if spelling == "cwd at mnt":
            return self.base + "/mnt", f"{names['root']}/{relpath}"
        text = f"{self.root}/{relpath}"
        return None, os.fsencode(text) if spelling == "bytes" else Path(text) if spelling == "path" else text


class DotDotMatchesLocal(RuleBasedStateMachine):
    """Paths with ``..`` into, out of and back into the mount, the same on a local copy of the layout."""

    def __init__(self, env: MountE2E) -> None:
        super().__init__()
        self.names = {"root": f"dd-{uuid.uuid4().hex[:10]}", "side": f"side-{uuid.uuid4().hex[:10]}"}
        self.agent_root = env.real(self.names["root"])
        self.agent_root.mkdir()
        local_base = tempfile.mkdtemp(prefix="fxdd", dir="/tmp")
        os.makedirs(f"{local_base}/mnt/{self.names['root']}")
        self.trees = [
            Tree(local_base, f"{local_base}/mnt/{self.names['root']}", f"{local_base}/{self.names['side']}"),
            Tree(str(env.base), env.path(self.names["root"]), f"{env.base}/{self.names['side']}"),
        ]
        for tree_ in self.trees:
            os.makedirs(f"{tree_.side}/t")
            Path(f"{tree_.side}/s").write_bytes(b"beside")
            Path(f"{tree_.side}/t/u").write_bytes(b"u")

    def teardown(self) -> None:
        try:
            local, mounted = self.trees
            assert tree(local.root) == tree(mounted.root) == tree(str(self.agent_root))
            assert tree(local.side) == tree(mounted.side)
        finally:
            shutil.rmtree(self.agent_root, ignore_errors=True)  # a step may have removed it
            shutil.rmtree(self.trees[0].base)
            shutil.rmtree(self.trees[1].side, ignore_errors=True)  # a step may have removed it

    def same(self, action: Callable[..., Any], spelling: str, *relpaths: str, **kwargs: Any) -> Any:
        """Run ``action`` on both sides with the paths spelled alike; both must end the same way."""
        outcomes = [self._outcome(tree_, action, spelling, relpaths, kwargs) for tree_ in self.trees]
        assert outcomes[0] == outcomes[1], (
            f"{action.__name__}{relpaths} {spelling} {kwargs}: local {outcomes[0]} mount {outcomes[1]}"
        )
        return outcomes[0]

    def _outcome(
        self, tree_: Tree, action: Callable[..., Any], spelling: str, relpaths: tuple[str, ...], kwargs: dict[str, Any]
    ) -> Any:
        spelled = [tree_.spelled(p, spelling, self.names) for p in relpaths]
        cwd = spelled[0][0]
        previous = os.getcwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            return ("ok", action(*(argument for _, argument in spelled), **kwargs))
        except OSError as exc:
            # Errors must name the argument as given (like the kernel's), whatever the mount did with it.
            texts = [os.fsdecode(argument) for _, argument in spelled]
            named = []
            for name in (exc.filename, exc.filename2):
                text = None if name is None else os.fsdecode(name)
                if text in texts:
                    named.append(f"argument {texts.index(text)}")
                else:  # a path the function derived from its argument (os.makedirs' parent …)
                    named.append(text.replace(tree_.base, "<base>", 1) if text else text)
            return ("error", type(exc).__name__, exc.errno, *named)
        finally:
            if cwd is not None:
                os.chdir(previous)

    @initialize(a=PAYLOADS, da=PAYLOADS)
    def seed(self, a: bytes, da: bytes) -> None:
        self.same(lambda p: pathlib.Path(p).write_bytes(a), "str", "a")
        self.same(os.makedirs, "str", "d/e")
        self.same(lambda p: pathlib.Path(p).write_bytes(da), "str", "d/a")

    @rule(path=DOT_NAMES, spelling=SPELLINGS)
    def read(self, path: str, spelling: str) -> None:
        def read(p: Any) -> tuple[bytes, bool]:
            with open(p, "rb") as f:
                return f.read(), f.name == os.fspath(p)

        self.same(read, spelling, path)

    @rule(path=DOT_NAMES, spelling=SPELLINGS, data=PAYLOADS, mode=st.sampled_from(["wb", "ab", "xb", "r+b"]))
    def write(self, path: str, spelling: str, data: bytes, mode: str) -> None:
        def write(p: Any) -> int:
            with open(p, mode) as f:
                return f.write(data)

        self.same(write, spelling, path)

    @rule(path=DOT_NAMES, spelling=SPELLINGS)
    def stat(self, path: str, spelling: str) -> None:
        def stat(p: Any) -> tuple[str, int | None, str]:
            result = os.stat(p)
            size = None if stat_module.S_ISDIR(result.st_mode) else result.st_size
            return stat_module.filemode(result.st_mode), size, stat_module.filemode(os.lstat(p).st_mode)

        self.same(stat, spelling, path)
        self.same(
            lambda p: (os.path.exists(p), os.path.isfile(p), os.path.isdir(p), os.access(p, os.R_OK)),
            spelling,
            path,
        )

    @rule(path=DOT_NAMES, spelling=SPELLINGS)
    def listdir(self, path: str, spelling: str) -> None:
        self.same(lambda p: sorted(os.listdir(p)), spelling, path)

    @rule(path=DOT_NAMES, spelling=SPELLINGS)
    def scandir(self, path: str, spelling: str) -> None:
        def scan(p: Any) -> list[tuple[Any, bool, int | None]]:
            with os.scandir(p) as entries:
                return sorted((e.name, e.is_dir(), e.stat().st_size if e.is_file() else None) for e in entries)

        self.same(scan, spelling, path)

    @rule(path=DOT_NAMES, spelling=SPELLINGS, how=st.sampled_from(["mkdir", "rmdir", "unlink", "makedirs"]))
    def namespace(self, path: str, spelling: str, how: str) -> None:
        self.same(getattr(os, how), spelling, path)  # looked up now: the installed function

    @rule(pair=SAME_PLACE_PAIRS, spelling=SPELLINGS, how=st.sampled_from(["rename", "replace"]))
    def rename(self, pair: tuple[str, str], spelling: str, how: str) -> None:
        self.same(getattr(os, how), spelling, *pair)

    @rule(src=DOT_NAMES, dst=DOT_NAMES, spelling=SPELLINGS)
    def copyfile(self, src: str, dst: str, spelling: str) -> None:
        self.same(lambda s, d: os.fsdecode(os.path.basename(shutil.copyfile(s, d))), spelling, src, dst)

    @rule(path=DOT_NAMES, spelling=SPELLINGS, size=SIZES, mode=MODES, mtime=TIMES_NS)
    def attributes(self, path: str, spelling: str, size: int, mode: int, mtime: int) -> None:
        self.same(os.truncate, spelling, path, length=size)
        self.same(os.chmod, spelling, path, mode=mode)

        def utime(p: Any) -> int:
            try:
                os.utime(p, ns=(mtime, mtime))
            except OSError as exc:  # CPython's utime errors carry no file name, the mount's do
                raise OSError(exc.errno, exc.strerror) from None
            return os.stat(p).st_mtime_ns

        self.same(utime, spelling, path)

    @rule(path=DOT_NAMES, spelling=SPELLINGS)
    def pathlib_calls(self, path: str, spelling: str) -> None:
        def touch(p: Any) -> tuple[bool, bool]:
            pathlib.Path(os.fsdecode(p)).touch()
            return pathlib.Path(os.fsdecode(p)).exists(), pathlib.Path(os.fsdecode(p)).is_file()

        self.same(touch, spelling, path)

    @rule(path=DOT_NAMES, spelling=SPELLINGS)
    def rmtree(self, path: str, spelling: str) -> None:
        self.same(shutil.rmtree, spelling, path)

    @invariant()
    def walks_agree(self) -> None:
        for place in ("root", "side"):
            walks = [
                sorted(
                    (os.path.relpath(top, getattr(t, place)), sorted(dirs), sorted(files))
                    for top, dirs, files in os.walk(getattr(t, place))
                )
                for t in self.trees
            ]
            assert walks[0] == walks[1]


def test_dotdot_paths_into_and_out_of_the_mount_match_a_local_tree(e2e: MountE2E) -> None:
    run_state_machine_as_test(lambda: DotDotMatchesLocal(e2e), settings=DOT_SETTINGS)
