"""Every extension point is documented and tested.

* documented: a hookspec docstring, and a section of docs/plugins.md that opens with the hook's real
  signature (and, for hooks handing out a ``register`` callable, that callable's real signature);
* tested: some test module other than this one implements the hook (an ``@hookimpl`` function or
  method, or the source of a fake plugin it writes to disk) or calls it through a plugin manager.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from functools import cache
from pathlib import Path

import pytest

from fluxon_core import hookspecs, protocols
from fluxon_core.plugins import REGISTER_HOOKS

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"


def _hookspec_names() -> list[str]:
    return sorted(
        name
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "fluxon_spec")  # set by the HookspecMarker("fluxon") decorator
    )


def _doc() -> str:
    return PLUGINS_DOC.read_text(encoding="utf-8")


def test_the_hookspecs_are_found() -> None:
    names = _hookspec_names()
    assert set(REGISTER_HOOKS.values()) <= set(names)
    assert {"fluxon_role_started", "fluxon_role_stopping", "fluxon_register_commands"} <= set(names)


@pytest.mark.parametrize("name", _hookspec_names())
def test_every_hookspec_has_a_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc.split()) >= 8, f"hookspec {name} needs a docstring saying when it is called"


@pytest.mark.parametrize("name", _hookspec_names())
def test_every_hookspec_has_a_section_in_docs_plugins_md(name: str) -> None:
    headings = re.findall(r"^#{2,4} `(\w+)`\s*$", _doc(), flags=re.MULTILINE)
    assert name in headings, f"docs/plugins.md has no '### `{name}`' section"


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    headings = re.findall(r"^#{2,4} `(fluxon_\w+)`\s*$", _doc(), flags=re.MULTILINE)
    assert sorted(headings) == _hookspec_names()


@pytest.mark.parametrize("category", sorted(REGISTER_HOOKS))
def test_every_backend_category_is_documented_with_its_protocol(category: str) -> None:
    protocol = protocols.BACKEND_PROTOCOLS[category].__name__
    row = next((line for line in _doc().splitlines() if line.startswith(f"| `{category}` |")), None)
    assert row is not None, f"docs/plugins.md has no table row for the {category} category"
    assert f"`{REGISTER_HOOKS[category]}`" in row and f"`{protocol}`" in row


def test_python_examples_in_the_guide_are_valid_python() -> None:
    blocks = re.findall(r"```python\n(.*?)```", _doc(), flags=re.DOTALL)
    assert len(blocks) >= 3
    for block in blocks:
        ast.parse(block)


# ---------------------------------------------------------------- documented signatures


def _spec_parameters(name: str) -> list[str]:
    return list(inspect.signature(getattr(hookspecs, name)).parameters)


def _callable_parameters(protocol: type) -> list[str]:
    """How the guide writes the parameters of a ``register`` Protocol's ``__call__``: ``name`` or ``name=default``."""
    parameters = list(inspect.signature(protocol.__call__).parameters.values())[1:]  # drop self
    return [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in parameters]


def _register_protocol(name: str) -> type | None:
    """The Protocol of the hook's ``register`` argument, when it has one."""
    protocol = typing.get_type_hints(getattr(hookspecs, name)).get("register")
    return protocol if isinstance(protocol, type) else None


def _section(heading: str) -> str:
    """The text under the heading ``heading`` (a hook name means its code-span heading), up to the next ## or ###."""
    title = f"`{heading}`" if heading in _hookspec_names() else heading
    pattern = rf"^#{{2,4}} {re.escape(title)}\s*$(.*?)(?=^#{{2,3}} |\Z)"
    match = re.search(pattern, _doc(), re.MULTILINE | re.DOTALL)
    assert match is not None, f"docs/plugins.md has no section headed {title}"
    return match.group(1)


def _documented_calls(text: str, callee: str) -> list[list[str]]:
    """The parameter lists of every inline-code call of ``callee`` in ``text``: `` `callee(a, b=None)` ``."""
    return [
        [part.strip() for part in arguments.split(",") if part.strip()]
        for arguments in re.findall(rf"`{re.escape(callee)}\(([^)`]*)\)`", text)
    ]


@pytest.mark.parametrize("name", _hookspec_names())
def test_each_hook_section_opens_with_the_hooks_real_signature(name: str) -> None:
    opening = _section(name).strip().split("\n\n", 1)[0]
    match = re.match(rf"`{name}\(([^)`]*)\)`", opening)
    assert match is not None, f"the {name} section of docs/plugins.md must open with `{name}(...)`"
    documented = [part.strip() for part in match.group(1).split(",") if part.strip()]
    assert documented == _spec_parameters(name), f"docs/plugins.md documents {name}({', '.join(documented)})"


def test_every_hook_signature_quoted_anywhere_in_the_guide_is_the_real_one() -> None:
    quoted = 0
    for name in _hookspec_names():
        for documented in _documented_calls(_doc(), name):
            quoted += 1
            assert documented == _spec_parameters(name), f"docs/plugins.md quotes {name}({', '.join(documented)})"
    assert quoted >= len(_hookspec_names())


@pytest.mark.parametrize("name", [n for n in _hookspec_names() if _register_protocol(n) is not None])
def test_the_register_callable_a_section_quotes_is_the_real_one(name: str) -> None:
    protocol = _register_protocol(name)
    assert protocol is not None
    for documented in _documented_calls(_section(name), "register"):
        assert documented == _callable_parameters(protocol), (
            f"the {name} section quotes register({', '.join(documented)}); "
            f"{protocol.__name__} takes ({', '.join(_callable_parameters(protocol))})"
        )


def test_every_register_callable_is_documented_with_its_real_signature() -> None:
    protocols = {p for n in _hookspec_names() if (p := _register_protocol(n)) is not None}
    assert protocols == {hookspecs.RegisterBackend, hookspecs.RegisterCommand, hookspecs.RegisterRole}
    generic = re.findall(r"^register\(([^)]*)\)$", _section("The `register` callable") + "\n", re.MULTILINE)
    assert [[part.strip() for part in generic[0].split(",")]] == [_callable_parameters(hookspecs.RegisterBackend)]
    for protocol in protocols - {hookspecs.RegisterBackend}:
        users = [n for n in _hookspec_names() if _register_protocol(n) is protocol]
        assert any(_documented_calls(_section(n), "register") for n in users), (
            f"no section of {', '.join(users)} quotes its register({', '.join(_callable_parameters(protocol))})"
        )


# ---------------------------------------------------------------- every hook has a test


def _is_hookimpl(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "hookimpl") or (
        isinstance(target, ast.Attribute) and target.attr == "hookimpl"
    )


def exercised_hooks(source: str) -> set[str]:
    """The hooks a test module implements or calls.

    * an ``@hookimpl``-decorated function or method named after the hook;
    * an ``@hookimpl`` followed by ``def <hook>(`` inside a string: the source of a fake plugin that
      the test writes to disk and has discovered through entry points;
    * ``<manager>.hook.<hook>`` or ``<manager>.notify("<hook>", ...)``: the hook called directly.

    A bare mention of the name (a comment, a docstring, an error message) does not count.
    """
    known = set(_hookspec_names())
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name in known and any(_is_hookimpl(d) for d in node.decorator_list):
                found.add(node.name)
        elif isinstance(node, ast.Attribute):
            if node.attr in known and isinstance(node.value, ast.Attribute) and node.value.attr == "hook":
                found.add(node.attr)
        elif isinstance(node, ast.Call):
            first = node.args[0] if node.args else None
            if isinstance(node.func, ast.Attribute) and node.func.attr == "notify" and isinstance(first, ast.Constant):
                found.update({first.value} & known)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(set(re.findall(r"@hookimpl\s*\n\s*def (\w+)\(", node.value)) & known)
    return found


def _test_modules() -> list[Path]:
    modules = [path for path in sorted((ROOT / "tests").glob("test_*.py")) if path.name != Path(__file__).name]
    return modules + sorted((ROOT / "examples" / "plugins").glob("*/tests/test_*.py"))


@cache
def _tests_by_hook() -> dict[str, list[str]]:
    by_hook: dict[str, list[str]] = {name: [] for name in _hookspec_names()}
    for path in _test_modules():
        for name in exercised_hooks(path.read_text(encoding="utf-8")):
            by_hook[name].append(str(path.relative_to(ROOT)))
    return by_hook


@pytest.mark.parametrize("name", _hookspec_names())
def test_every_hook_has_a_test(name: str) -> None:
    assert _tests_by_hook()[name], (
        f"no test module implements {name} (an @hookimpl function, or a fake plugin's source) "
        f"or calls it through a plugin manager (.hook.{name}, notify({name!r}, ...))"
    )


def test_what_counts_as_exercising_a_hook() -> None:
    source = '''
from fluxon_core.hookspecs import hookimpl
import fluxon_core.hookspecs as specs


class Plugin:
    @hookimpl
    def fluxon_register_caches(self, register):
        """Mentions fluxon_register_roles, which does not count."""


@specs.hookimpl(tryfirst=True)
def fluxon_role_started(role):
    pass


def fluxon_register_transports(register):  # not decorated: not an implementation
    pass


FAKE_PLUGIN = """
@hookimpl
def fluxon_register_coordinators(register):
    pass
"""
manager.hook.fluxon_register_metrics_sinks(register=print)
manager.notify("fluxon_role_stopping", role="x", instance_key="y")
print("fluxon_register_commands")  # a mention
'''
    assert exercised_hooks(source) == {
        "fluxon_register_caches",
        "fluxon_role_started",
        "fluxon_register_coordinators",
        "fluxon_register_metrics_sinks",
        "fluxon_role_stopping",
    }
