"""The plugin boundary at run time: the core imports without any plugin or optional backend library, and
every default register hook is typed. (Which package may import which is checked by ``lint-imports``.)"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

from fluxon_core.hookspecs import RegisterBackend
from fluxon_core.plugins import REGISTER_HOOKS, get_plugin_manager

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS_ROOT = REPO_ROOT / "fluxon_plugins"
PLUGIN_PACKAGES = sorted(p.name for p in PLUGINS_ROOT.iterdir() if (p / "__init__.py").exists())


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
