"""Every extension point is documented: in its hookspec docstring and in docs/plugins.md."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from fluxon_core import hookspecs, protocols
from fluxon_core.plugins import REGISTER_HOOKS

PLUGINS_DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


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
