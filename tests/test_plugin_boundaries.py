"""The plugin boundary: each default plugin imports only ``fluxon_core`` and itself, and the core
imports without any plugin or optional backend library installed."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fluxon_core.hookspecs import RegisterBackend
from fluxon_core.plugins import REGISTER_HOOKS, get_plugin_manager

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS_ROOT = REPO_ROOT / "fluxon_plugins"
PLUGIN_PACKAGES = sorted(p.name for p in PLUGINS_ROOT.iterdir() if (p / "__init__.py").exists())

# Project packages a plugin must not reach into (third-party libraries are the plugin's own business).
FORBIDDEN_ROOTS = ("fluxon_fs", "fluxon_py", "fluxon_plugins")

# sqlite_access still builds on fluxon_fs.auth (records, password hashing, scopes); moving those
# into the core is a change under fluxon_fs/, tracked separately.
PENDING = {("sqlite_access", "fluxon_fs")}


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", PLUGIN_PACKAGES)
def test_a_default_plugin_imports_only_the_core_and_itself(package: str) -> None:
    own = f"fluxon_plugins.{package}"
    offending = [
        f"{path.relative_to(REPO_ROOT)}: {name}"
        for path in sorted((PLUGINS_ROOT / package).rglob("*.py"))
        for name in _imported_modules(path)
        if name.split(".")[0] in FORBIDDEN_ROOTS
        and not (name == own or name.startswith(own + "."))
        and (package, name.split(".")[0]) not in PENDING
    ]
    assert offending == []


def test_the_core_imports_without_plugins_or_optional_backend_libraries() -> None:
    code = """
        import importlib, pkgutil, sys
        for blocked in ("fluxon_plugins", "fluxon_fs", "pyetcd", "grpc", "zmq", "tikv_client"):
            sys.modules[blocked] = None  # any import of it raises ImportError
        import fluxon_core
        for module in pkgutil.walk_packages(fluxon_core.__path__, "fluxon_core."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
        print("ok")
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), proc.stderr


def test_every_default_register_hook_takes_a_typed_register_callable() -> None:
    manager = get_plugin_manager()
    checked = 0
    for hook_name in REGISTER_HOOKS.values():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            if impl.plugin_name not in manager.defaults:
                continue
            hints = inspect.get_annotations(impl.function, eval_str=True)
            assert hints.get("register") is RegisterBackend, f"{impl.plugin_name}.{hook_name}"
            checked += 1
    assert checked >= len(PLUGIN_PACKAGES)
