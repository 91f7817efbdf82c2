"""Fake plugin distributions on disk, and subprocesses that discover them the real way.

A fake distribution is what an installer leaves behind: ``<name>-<version>.dist-info/`` holding
``METADATA`` and ``entry_points.txt``, next to the plugin's modules. A subprocess started with that
directory on ``PYTHONPATH`` finds it through ``importlib.metadata`` exactly as it would find a
pip-installed plugin, so discovery, ``FLUXON_LOAD_PLUGINS`` filtering and failure isolation are
exercised without mocks. Each scenario runs in its own interpreter because the plugin manager is
process-wide and scans once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PLUGIN_DIR = REPO_ROOT / "examples" / "plugins" / "fluxon-memstate"
ENTRY_POINT_GROUP = "fluxon.plugins"


@attrs.frozen
class FakeDistribution:
    """An installed distribution with ``fluxon.plugins`` entry points and the modules they name."""

    name: str
    entry_points: Mapping[str, str]
    modules: Mapping[str, str]
    version: str = "1.0"


MARKERS_ENV = "FLUXON_TEST_MARKERS"
"""Directory in which every fake plugin module drops a file named after its entry point when imported."""

_PLUGIN_HEADER = """\
import os

from fluxon_core.hookspecs import hookimpl

if os.environ.get({markers_env!r}):
    with open(os.path.join(os.environ[{markers_env!r}], {entry_point!r}), "w") as marker:
        marker.write("imported")
"""

_SINK_CLASS = """
class Sink:
    \"\"\"A metrics sink that keeps its samples.\"\"\"

    def __init__(self, options):
        self.samples = []

    def record(self, name, value, labels=None, kind="gauge"):
        self.samples.append((name, value))

    def close(self):
        pass


@hookimpl
def fluxon_register_metrics_sinks(register):
    for kind in {kinds!r}:
        register(kind, Sink)
"""

_COMMANDS = """
@hookimpl
def fluxon_register_commands(register):
    def add_arguments(parser):
        parser.add_argument("--who", default="world")

    def run(args):
        print({entry_point!r} + " greets " + args.who)
        return 0

    for name in {commands!r}:
        register(name, "greet someone", add_arguments, run)
"""

_RAISING_HOOK = """
@hookimpl
def {hook}(register):
    raise RuntimeError("boom in {hook}")
"""


def fake_plugin(
    dist_name: str,
    entry_point: str,
    *,
    sinks: Sequence[str] = (),
    commands: Sequence[str] = (),
    import_error: str | None = None,
    raising_hook: str | None = None,
    extra_source: str = "",
) -> FakeDistribution:
    """A distribution with one plugin module ``fake_<entry_point>``.

    The module drops a marker when imported (see :data:`MARKERS_ENV`), then raises ``ImportError``
    if ``import_error`` is given; otherwise it registers metrics-sink kinds ``sinks``, CLI commands
    ``commands`` (printing ``"<entry_point> greets <who>"``) and a ``raising_hook`` that raises.
    """
    parts = [_PLUGIN_HEADER.format(markers_env=MARKERS_ENV, entry_point=entry_point)]
    if import_error is not None:
        parts.append(f"raise ImportError({import_error!r})\n")
    if sinks:
        parts.append(_SINK_CLASS.format(kinds=tuple(sinks)))
    if commands:
        parts.append(_COMMANDS.format(entry_point=entry_point, commands=tuple(commands)))
    if raising_hook is not None:
        parts.append(_RAISING_HOOK.format(hook=raising_hook))
    parts.append(textwrap.dedent(extra_source))
    module = f"fake_{entry_point}"
    return FakeDistribution(dist_name, {entry_point: module}, {module: "\n".join(parts)})


def write_distribution(site_dir: Path, dist: FakeDistribution) -> None:
    """Lay ``dist`` out under ``site_dir`` the way an installer would."""
    dist_info = site_dir / f"{re.sub(r'[-_.]+', '_', dist.name)}-{dist.version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist.name}\nVersion: {dist.version}\n", encoding="utf-8"
    )
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{name} = {target}" for name, target in dist.entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for module, source in dist.modules.items():
        parts = module.split(".")
        for depth in range(1, len(parts)):
            package_init = site_dir.joinpath(*parts[:depth], "__init__.py")
            package_init.parent.mkdir(parents=True, exist_ok=True)
            package_init.touch()
        site_dir.joinpath(*parts[:-1]).mkdir(parents=True, exist_ok=True)
        site_dir.joinpath(*parts[:-1], parts[-1] + ".py").write_text(textwrap.dedent(source), encoding="utf-8")


def make_site(root: Path, *dists: FakeDistribution) -> Path:
    """A fresh site directory under ``root`` holding ``dists``."""
    site_dir = root / "site"
    site_dir.mkdir(parents=True)
    for dist in dists:
        write_distribution(site_dir, dist)
    return site_dir


def subprocess_env(site_dirs: Sequence[Path], load_plugins: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child that sees ``site_dirs``; ``load_plugins`` None leaves FLUXON_LOAD_PLUGINS unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("FLUXON_LOAD_PLUGINS", "PYTHONPATH", "FLUXON_LOG")}
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in site_dirs)
    if load_plugins is not None:
        env["FLUXON_LOAD_PLUGINS"] = load_plugins
    env.update(extra)
    return env


def run_python(
    code: str,
    site_dirs: Sequence[Path],
    cwd: Path,
    load_plugins: str | None = None,
    timeout_s: float = 60.0,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that sees ``site_dirs``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=subprocess_env(site_dirs, load_plugins, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def run_fluxon(
    args: Sequence[str],
    site_dirs: Sequence[Path],
    cwd: Path,
    load_plugins: str | None = None,
    timeout_s: float = 60.0,
    console_script: bool = False,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    """Run the ``fluxon`` CLI in a fresh interpreter that sees ``site_dirs``.

    ``console_script`` runs the installed ``fluxon`` executable instead of ``python -m fluxon_core.cli``.
    """
    if console_script:
        executable = shutil.which("fluxon")
        assert executable is not None, "the fluxon console script is not installed (pip install -e .)"
        command = [executable, *args]
    else:
        command = [sys.executable, "-m", "fluxon_core.cli", *args]
    return subprocess.run(
        command,
        cwd=cwd,
        env=subprocess_env(site_dirs, load_plugins, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def json_output(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document a child printed as its last stdout line; fails with the child's output otherwise."""
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def install_example_plugin(workdir: Path) -> Path:
    """``pip install`` the example third-party plugin into ``workdir/target``; returns that directory.

    The sources are copied first so building never leaves artefacts in the repository.
    """
    source = workdir / "fluxon-memstate"
    shutil.copytree(EXAMPLE_PLUGIN_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = workdir / "target"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"pip install of the example plugin failed:\n{proc.stdout}\n{proc.stderr}"
    return target


PROBE = """
import json

from fluxon_core import plugins

manager = plugins.get_plugin_manager()
registry = manager.backends()
print(json.dumps({
    "plugins": {p.name: {"origin": p.origin, "distribution": p.distribution, "module": p.module} for p in manager.plugins()},
    "failures": [[f.name, f.error] for f in manager.failures],
    "kinds": {category: registry.kinds(category) for category in plugins.REGISTER_HOOKS},
    "conflicts": [[c.category, c.kind, list(c.plugins)] for c in registry.conflicts()],
    "scans": plugins.entry_point_scans,
}))
"""
"""Child code printing the plugin manager's view of the world as JSON (read it with :func:`json_output`)."""


def probe(site_dirs: Sequence[Path], cwd: Path, load_plugins: str | None = None, **extra_env: str) -> dict[str, Any]:
    """The plugin manager's view (plugins, failures, kinds, conflicts) in a fresh interpreter."""
    result: dict[str, Any] = json_output(run_python(PROBE, site_dirs, cwd, load_plugins, **extra_env))
    return result
