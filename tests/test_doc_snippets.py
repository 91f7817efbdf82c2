"""Every fenced code block of README.md and docs/*.md is executed, checked or explicitly excused.

* ```python blocks run in a fresh interpreter (a temporary working directory and ``HOME``); a block
  fails the test with its file and line. ```bash / ```sh / ```console blocks run with bash (for
  ``console``, the ``$ `` lines).
* ```yaml, ```toml and ```json blocks must parse; ```text and ```sql blocks are shown as they are.
  A block without a language fails: a command must not hide in an unlabelled block.
* A python or shell block that cannot run as it stands says so with an HTML comment on the line right
  before its fence (blank lines between are allowed):

  ``<!-- snippet: no-run (reason) -->``
      not executed (python blocks are still compiled); the reason is required.
  ``<!-- snippet: needs=demo-stack -->``
      run while ``fluxon demo`` serves (started once for this module, as the README's first command
      does, with its default names replaced, see below).
  ``<!-- snippet: needs=kv-plane -->``
      run while ``examples/start_master_owner.py`` serves (the KV example of docs/kv.md).
  ``given=a,b`` (with ``needs=``)
      the block uses names it does not define; the stack provides them (``demo-stack``:
      ``kvclient_dict``, ``yaml_text``, ``user``, ``password`` of the demo's reader.yaml).
  ``continues``
      run in the same interpreter right after the previous python block of the file (whose names it
      uses); it states the same ``needs=``.
  ``until-ctrl-c``
      the block serves until interrupted: it gets SIGINT a moment (``CTRL_C_GRACE_S``) after it
      prints its first line, and must exit with status 130.
  ``pythonpath=DIR``
      run with the repository's ``DIR`` on ``PYTHONPATH`` (e.g. an example plugin's source).

The docs use the demo's fixed names (``/tmp/fluxon_fs_demo``, ``/dev/shm/fluxon_fs_demo``, cluster
``demo-fs-cluster``, panel ``127.0.0.1:18080``, the KV example's ``fluxon_demo``, mounts under
``/tmp/mnt/``). Several runs share this machine, so every block runs with those names replaced by
names of its own (those of the stack it needs, else fresh ones); nothing else in a block is changed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import yaml

from fluxon_fs.cli.demo import add_demo_arguments
from fluxon_fs.config import FluxonFsSection
from fluxon_fs.demo.stack import StackSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_ELSEWHERE = {
    ROOT / "docs" / "deploy.md": "tests/test_deploy_netns.py runs every command block of it on three namespace hosts",
}
"""Pages whose blocks another test executes (in the setting they need); their prose is still checked here."""
PYTHON = {"python"}
SHELL = {"bash", "sh", "console"}
DATA = {"yaml", "toml", "json", "text", "sql"}
STACKS = ("demo-stack", "kv-plane")
GIVEN_BY_STACK = {"demo-stack": {"kvclient_dict", "yaml_text", "user", "password"}, "kv-plane": set()}
KV_EXAMPLE_NAME = "fluxon_demo"  # CLUSTER_NAME and both shared paths' last part in examples/start_master_owner.py
MOUNT_ROOT = "/tmp/mnt/"
BLOCK_TIMEOUT_S = 180
CTRL_C_GRACE_S = 2.0  # from a block's first line to the call that waits for Ctrl-C

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>```+)(?P<lang>[^`\s]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")
NO_RUN = re.compile(r"^no-run \((?P<reason>.+)\)$")


@attrs.frozen
class Marker:
    """What a ``<!-- snippet: ... -->`` comment says about the block after it."""

    no_run_reason: str | None = None
    needs: str | None = None
    given: tuple[str, ...] = ()
    continues: bool = False
    until_ctrl_c: bool = False
    pythonpath: str | None = None


@attrs.frozen
class Block:
    """One fenced block of a document."""

    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: Marker | None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in PYTHON | SHELL and not (self.marker and self.marker.no_run_reason)

    @property
    def needs(self) -> str | None:
        return self.marker.needs if self.marker else None


def parse_marker(body: str) -> Marker:
    """The marker's meaning; ``ValueError`` saying what is wrong."""
    no_run = NO_RUN.match(body)
    if no_run:
        return Marker(no_run_reason=no_run.group("reason").strip())
    if body.startswith("no-run"):
        raise ValueError("no-run needs a reason: <!-- snippet: no-run (why it cannot run) -->")
    values: dict = {}
    for token in body.split():
        name, _, value = token.partition("=")
        if name == "needs" and value in STACKS:
            values["needs"] = value
        elif name == "given" and value:
            values["given"] = tuple(value.split(","))
        elif token == "continues":
            values["continues"] = True
        elif token == "until-ctrl-c":
            values["until_ctrl_c"] = True
        elif name == "pythonpath" and (ROOT / value).is_dir():
            values["pythonpath"] = value
        else:
            raise ValueError(f"unknown snippet marker {token!r} (see tests/test_doc_snippets.py)")
    marker = Marker(**values)
    if marker.given and set(marker.given) - GIVEN_BY_STACK.get(marker.needs or "", set()):
        raise ValueError(f"given={','.join(marker.given)}: {marker.needs} provides {GIVEN_BY_STACK.get(marker.needs)}")
    return marker


def read_blocks(doc: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of ``doc`` and the problems of its markers."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    pending: tuple[int, Marker | None] | None = None  # a marker waiting for its fence
    index = 0
    while index < len(lines):
        line = lines[index]
        marker_match = MARKER.match(line)
        fence = FENCE.match(line)
        if marker_match:
            if pending is not None:
                problems.append(f"{doc.relative_to(ROOT)}:{pending[0]}: snippet marker not followed by a fence")
            try:
                pending = (index + 1, parse_marker(marker_match.group("body")))
            except ValueError as exc:
                problems.append(f"{doc.relative_to(ROOT)}:{index + 1}: {exc}")
                pending = (index + 1, None)
        elif fence:
            indent, ticks = fence.group("indent"), fence.group("ticks")
            end = index + 1
            while end < len(lines) and lines[end].strip() != ticks:
                end += 1
            body = [text[len(indent) :] if text.startswith(indent) else text for text in lines[index + 1 : end]]
            marker = pending[1] if pending else None
            blocks.append(Block(doc, index + 1, fence.group("lang"), "\n".join(body) + "\n", marker))
            pending = None
            index = end
        elif line.strip() and pending is not None:
            problems.append(f"{doc.relative_to(ROOT)}:{pending[0]}: snippet marker not right before a fence")
            pending = None
        index += 1
    if pending is not None:
        problems.append(f"{doc.relative_to(ROOT)}:{pending[0]}: snippet marker not followed by a fence")
    return blocks, problems


def all_blocks() -> list[Block]:
    return [block for doc in DOCS if doc not in RUN_ELSEWHERE for block in read_blocks(doc)[0]]


def runnable_chains() -> list[list[Block]]:
    """Blocks to execute, a python block marked ``continues`` joined to the previous one of its file."""
    chains: list[list[Block]] = []
    last_python: dict[Path, list[Block]] = {}
    for block in all_blocks():
        if not block.runs:
            continue
        if block.lang in PYTHON and block.marker and block.marker.continues and block.doc in last_python:
            last_python[block.doc].append(block)
            continue
        chain = [block]
        chains.append(chain)
        if block.lang in PYTHON:
            last_python[block.doc] = chain
    return chains


# ----------------------------------------------------------------- names and stacks


@attrs.frozen
class Names:
    """This run's values for the fixed names the docs use."""

    workdir: str
    shared_memory_path: str
    cluster_name: str
    panel_addr: str
    s3_addr: str
    kv_master_addr: str
    kv_example_name: str
    mount_root: str

    @classmethod
    def fresh(cls, root: Path) -> Names:
        tag = f"fx{uuid.uuid4().hex[:8]}"
        return cls(
            workdir=str(root / "demo"),
            shared_memory_path=f"/dev/shm/{tag}fs",
            cluster_name=f"{tag}-fs",
            panel_addr=f"127.0.0.1:{free_port()}",
            s3_addr=f"127.0.0.1:{free_port()}",
            kv_master_addr=f"127.0.0.1:{free_port()}",
            kv_example_name=f"{tag}kv",
            mount_root=str(root / "mnt") + "/",
        )

    def replacements(self) -> list[tuple[str, str]]:
        """(fixed name in the docs, this run's value): the demo's defaults, read from the code."""
        demo = demo_defaults()
        return [
            (demo.shared_memory_path, self.shared_memory_path),
            (demo_workdir(), self.workdir),
            (demo.cluster_name, self.cluster_name),
            (demo.panel_listen_addr, self.panel_addr),
            (demo.s3_listen_addr, self.s3_addr),
            (f"{demo.kv_master_host}:{demo.kv_master_port}", self.kv_master_addr),
            (KV_EXAMPLE_NAME, self.kv_example_name),
            (MOUNT_ROOT, self.mount_root),
        ]

    def apply(self, code: str) -> str:
        for fixed, value in self.replacements():
            code = code.replace(fixed, value)
        return code

    def shm_dirs(self) -> list[str]:
        return [self.shared_memory_path, f"/dev/shm/{self.kv_example_name}"]


def demo_workdir() -> str:
    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    return str(parser.get_default("workdir"))


def demo_defaults() -> StackSettings:
    return StackSettings(workdir=Path(demo_workdir()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def snippet_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, HOME=str(home), PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("FLUXON_LOG", None)
    return env


@attrs.frozen
class Stack:
    """A running stack a block may need: its names and the values it gives to ``given=`` names."""

    names: Names
    given: dict


def _sigint_as_default() -> None:
    # Children that are to be stopped with Ctrl-C must not inherit an ignored SIGINT (a test run
    # started in the background of a script ignores it, and Python then never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_wait(argv: list[str], env: dict[str, str], log: Path, ready_text: str, what: str) -> subprocess.Popen:
    with open(log, "w") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_sigint_as_default
        )
    deadline = time.monotonic() + 240
    while ready_text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def _interrupt(proc: subprocess.Popen, log: Path, what: str) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        status = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert status == 130, f"{what} ended with {status}:\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[Stack]:
    """``fluxon demo`` (one writer and reader round), serving until the module ends."""
    root = tmp_path_factory.mktemp("demo-stack")
    names = Names.fresh(root)
    defaults = demo_defaults()
    env = snippet_env(home)
    env.update(
        CLUSTER_NAME=names.cluster_name,
        SHARED_MEMORY_PATH=names.shared_memory_path,
        SHARED_FILE_PATH=names.apply(defaults.shared_file_path),
        REMOTE_ROOT_DIR=names.apply(defaults.remote_root_dir),
        KV_MASTER_PORT=names.kv_master_addr.rsplit(":", 1)[1],
        FS_PANEL_LISTEN_ADDR=names.panel_addr,
        S3_GATEWAY_LISTEN_ADDR=names.s3_addr,
    )
    argv = [str(Path(sys.executable).parent / "fluxon"), "demo", "--workdir", names.workdir, "--rounds", "1"]
    log = root / "demo.out"
    proc = _start_and_wait(argv, env, log, "press Ctrl-C", "fluxon demo")
    reader_yaml = Path(names.workdir) / "reader.yaml"
    reader = yaml.safe_load(reader_yaml.read_text())
    given = {
        "kvclient_dict": reader["kvclient"],
        "yaml_text": reader_yaml.read_text(),
        "user": reader["fluxon_fs"]["identity"]["username"],
        "password": reader["fluxon_fs"]["identity"]["password"],
    }
    try:
        yield Stack(names, given)
    finally:
        _interrupt(proc, log, "fluxon demo")
        for path in names.shm_dirs():
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def kv_plane(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[Stack]:
    """``examples/start_master_owner.py``, serving until the module ends."""
    root = tmp_path_factory.mktemp("kv-plane")
    names = Names.fresh(root)
    shm = f"/dev/shm/{names.kv_example_name}"
    env = dict(snippet_env(home), CLUSTER_NAME=names.kv_example_name, SHARED_MEMORY_PATH=shm, SHARED_FILE_PATH=shm)
    argv = [sys.executable, "examples/start_master_owner.py", "--workdir", str(root / "work"), "--pool-size", "64MiB"]
    log = root / "kv.out"
    proc = _start_and_wait(argv, env, log, "press Ctrl-C", "examples/start_master_owner.py")
    try:
        yield Stack(names, {})
    finally:
        _interrupt(proc, log, "examples/start_master_owner.py")
        for path in names.shm_dirs():
            shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------- running blocks

RUNNER = """
import json, sys
plan = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__", **plan["given"]}
for block in plan["blocks"]:
    print("\\n@@block " + block["where"], file=sys.stderr, flush=True)  # own line, after any progress output
    padded = "\\n" * (block["line"]) + block["code"]
    exec(compile(padded, block["path"], "exec"), namespace)
"""


def _failed_block(chain: list[Block], stderr: str) -> str:
    started = re.findall(r"^@@block (\S+)$", stderr, flags=re.MULTILINE)
    return started[-1] if started else chain[0].where


def _python_argv(chain: list[Block], names: Names, given: dict, workdir: Path) -> list[str]:
    plan = {
        "given": {name: given[name] for block in chain if block.marker for name in block.marker.given},
        "blocks": [{"where": b.where, "path": str(b.doc), "line": b.line, "code": names.apply(b.code)} for b in chain],
    }
    plan_path = workdir / "plan.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    return [sys.executable, "-c", RUNNER, str(plan_path)]


def _shell_argv(block: Block, names: Names) -> list[str]:
    code = names.apply(block.code)
    if block.lang == "console":
        code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))
    return ["bash", "-e", "-o", "pipefail", "-c", code]


def _run_until_ctrl_c(argv: list[str], cwd: Path, env: dict[str, str], where: str) -> None:
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_default,
    )
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], BLOCK_TIMEOUT_S)
    first = proc.stdout.readline() if ready else ""
    if not first:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"{where}: printed nothing before exiting or timing out (status {proc.returncode})\n{err[-3000:]}")
    time.sleep(CTRL_C_GRACE_S)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 130, f"{where}: Ctrl-C gave exit status {proc.returncode}, not 130\n{err[-3000:]}"


@pytest.mark.parametrize("chain", runnable_chains(), ids=lambda chain: chain[0].where)
def test_block_runs(chain: list[Block], request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> None:
    first = chain[0]
    needs = first.needs
    for block in chain[1:]:
        assert block.needs == needs, f"{block.where}: a continuing block needs what {first.where} needs ({needs})"
    stack: Stack | None = request.getfixturevalue(needs.replace("-", "_")) if needs else None
    names = stack.names if stack else Names.fresh(tmp_path)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = snippet_env(home)
    if first.marker and first.marker.pythonpath:
        env["PYTHONPATH"] = str(ROOT / first.marker.pythonpath)
    if first.lang in PYTHON:
        argv = _python_argv(chain, names, stack.given if stack else {}, tmp_path)
    else:
        argv = _shell_argv(first, names)
    try:
        if first.marker and first.marker.until_ctrl_c:
            _run_until_ctrl_c(argv, workdir, env, first.where)
            return
        result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    finally:
        if stack is None:
            for path in names.shm_dirs():
                shutil.rmtree(path, ignore_errors=True)
    if result.returncode != 0:
        where = _failed_block(chain, result.stderr) if first.lang in PYTHON else first.where
        detail = re.sub(r"^@@block \S+\n", "", result.stderr, flags=re.MULTILINE)
        pytest.fail(
            f"{where}: {first.lang} block failed (exit {result.returncode})\n{result.stdout[-2000:]}{detail[-4000:]}"
        )


# ----------------------------------------------------------------- checks without running


def test_every_block_has_a_known_language_and_a_valid_marker() -> None:
    problems: list[str] = []
    for doc in DOCS:
        blocks, marker_problems = read_blocks(doc)
        problems += marker_problems
        for block in blocks:
            marker = block.marker
            if block.lang not in PYTHON | SHELL | DATA:
                problems.append(
                    f"{block.where}: fence language {block.lang!r} is not one of {sorted(PYTHON | SHELL | DATA)}"
                )
            elif marker and block.lang in DATA:
                problems.append(f"{block.where}: a {block.lang} block is never run; drop its snippet marker")
            elif marker and marker.continues and block.lang not in PYTHON:
                problems.append(f"{block.where}: only python blocks can continue the previous one")
            elif marker and marker.given and marker.needs is None:
                problems.append(f"{block.where}: given= names come from a stack: add needs=")
    assert not problems, "\n".join(problems)


def test_continuing_blocks_follow_a_python_block() -> None:
    seen_python: set[Path] = set()
    problems = []
    for block in all_blocks():
        if block.marker and block.marker.continues and block.doc not in seen_python:
            problems.append(f"{block.where}: marked continues, but no python block runs before it in this file")
        if block.lang in PYTHON and block.runs:
            seen_python.add(block.doc)
    assert not problems, "\n".join(problems)


def test_python_blocks_compile() -> None:
    problems = []
    for block in all_blocks():
        if block.lang in PYTHON:
            try:
                compile("\n" * block.line + block.code, str(block.doc), "exec")
            except SyntaxError as exc:
                problems.append(f"{block.doc.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    assert not problems, "\n".join(problems)


def test_data_blocks_parse() -> None:
    problems = []
    parsers = {"yaml": lambda text: list(yaml.safe_load_all(text)), "toml": tomllib.loads, "json": json.loads}
    for block in all_blocks():
        parse = parsers.get(block.lang)
        if parse is None:
            continue
        try:
            parse(block.code)
        except Exception as exc:
            problems.append(f"{block.where}: {block.lang} does not parse: {exc}")
    assert not problems, "\n".join(problems)


def test_the_demo_names_the_docs_use_are_the_demos() -> None:
    """The replacements above stand for the demo's real defaults; if those move, the docs must follow."""
    demo = demo_defaults()
    workdir = demo_workdir()
    assert demo.shared_file_path.startswith(workdir + "/") and demo.remote_root_dir.startswith(workdir + "/")
    example = (ROOT / "examples" / "start_master_owner.py").read_text(encoding="utf-8")
    for variable in ("CLUSTER_NAME", "SHARED_MEMORY_PATH", "SHARED_FILE_PATH"):
        assert re.search(rf'{variable} = os.environ.get\("{variable}", "[^"]*{KV_EXAMPLE_NAME}"\)', example)


# ----------------------------------------------------------------- names the prose uses

CONFIG_ROOT_SECTIONS = ("fluxon_fs", "fluxonkv_spec", "kvclient", "monitoring", "contribute_to_cluster_pool_size")
FS_SECTIONS = {field.name for field in attrs.fields(FluxonFsSection)}
"""The keys of the ``fluxon_fs`` section: ``fluxon_fs.<key>`` in prose is a config path, not a module."""
DOTTED_NAME = re.compile(r"\b((?:fluxon_core|fluxon_fs|fluxon_py|fluxon_plugins)(?:\.[A-Za-z_]\w*)+)")
CONFIG_PATH = re.compile(rf"`((?:{'|'.join(CONFIG_ROOT_SECTIONS)})\.[\w.\[\]'<>]+)`")


def _prose(doc: Path) -> str:
    """The hand-written part of a document (the generated configuration reference excluded)."""
    from fluxon_core.config.reference import BEGIN_MARK

    return doc.read_text(encoding="utf-8").partition(BEGIN_MARK)[0]


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_module_and_attribute_names_in_the_docs_exist() -> None:
    problems = []
    for doc in DOCS:
        text = _prose(doc)
        for match in DOTTED_NAME.finditer(text):
            name = match.group(1)
            if name.startswith("fluxon_fs.") and name.split(".")[1] in FS_SECTIONS:
                continue  # a config path (checked below), not a module
            if not _resolves(name):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{doc.relative_to(ROOT)}:{line}: {name} is no module or attribute")
    assert not problems, "\n".join(problems)


def test_config_paths_in_the_docs_exist() -> None:
    from fluxon_core.config.reference import reference_roots, rows_for

    known: set[str] = set()
    for _, config_type in reference_roots():
        for row in rows_for(config_type, ""):
            parts = re.sub(r"\['<name>'\]|\[\]", "", row.path).split(".")
            known.update(".".join(parts[start:end]) for start in range(len(parts)) for end in range(start + 1, 99))
    problems = []
    for doc in DOCS:
        text = _prose(doc)
        for match in CONFIG_PATH.finditer(text):
            path = re.sub(r"\[[^\]]*\]", "", match.group(1))
            if path.startswith("fluxon_fs.") and path.split(".")[1] not in FS_SECTIONS:
                continue  # a module (checked above)
            if path not in known:
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{doc.relative_to(ROOT)}:{line}: no config field {match.group(1)}")
    assert not problems, "\n".join(problems)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _synopses() -> Iterator[tuple[str, str]]:
    """(where, one command's synopsis with its continuation lines) from ``text`` blocks of ``fluxon`` commands."""
    for block in all_blocks():
        if block.lang != "text" or not block.code.startswith("fluxon "):
            continue
        current: list[str] = []
        start = block.line + 1
        for offset, line in enumerate(block.code.splitlines()):
            if line.startswith("fluxon "):
                if current:
                    yield f"{block.doc.relative_to(ROOT)}:{start}", " ".join(current)
                current, start = [line], block.line + 1 + offset
            elif line.strip():
                current.append(line.strip())
        if current:
            yield f"{block.doc.relative_to(ROOT)}:{start}", " ".join(current)


def test_cli_synopses_name_exactly_the_options_of_their_commands() -> None:
    from fluxon_core.cli import build_parser, collect_commands

    root = build_parser(collect_commands())
    problems = []
    for where, synopsis in _synopses():
        words = synopsis.split()[1:]
        leaves = [("fluxon", root)]
        while words:
            names, used = [words[0]], 1  # "pause | resume" lists alternative subcommands
            while used + 1 < len(words) and words[used] == "|":
                names.append(words[used + 1])
                used += 2
            if not all(name in _subcommands(parser) for _, parser in leaves for name in names):
                break
            del words[:used]
            leaves = [(f"{label} {name}", _subcommands(parser)[name]) for label, parser in leaves for name in names]
        documented = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", " ".join(words)))
        for label, parser in leaves:
            if _subcommands(parser):
                problems.append(f"{where}: {label} needs a subcommand")
                continue
            real = {option for action in parser._actions for option in action.option_strings} - {"-h", "--help"}
            spelled = {option for option in real if option in documented}
            missing = {
                min(action.option_strings, key=len)
                for action in parser._actions
                if action.option_strings and not set(action.option_strings) & spelled and action.dest != "help"
            }
            if documented - real:
                problems.append(f"{where}: {label} has no option {', '.join(sorted(documented - real))}")
            if missing:
                problems.append(f"{where}: {label} has options the synopsis leaves out: {', '.join(sorted(missing))}")
    assert not problems, "\n".join(problems)
