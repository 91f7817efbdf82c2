"""The configuration reference (``docs/configuration.md``) generated from the config classes.

The tables are rendered from the same attrs classes the loader parses, including each backend
kind's options class from the plugin registry, so the reference cannot drift from the parser:
``tests/test_docs_agreement.py`` fails when the committed file differs from what this renders.
Regenerate with ``python -m fluxon_core.config.reference --write docs/configuration.md``.
"""

from __future__ import annotations

import argparse
import collections.abc
import sys
import typing
from pathlib import Path
from typing import Any

import attrs

from fluxon_core.config.backend import BackendConfig
from fluxon_core.config.loader import describe_type, dump_config
from fluxon_core.plugins import REGISTER_HOOKS, get_plugin_manager

BEGIN_MARK = "<!-- BEGIN GENERATED REFERENCE: do not edit by hand; run python -m fluxon_core.config.reference --write docs/configuration.md -->"
END_MARK = "<!-- END GENERATED REFERENCE -->"


@attrs.frozen
class ReferenceRow:
    """One documented field."""

    path: str
    type_text: str
    default_text: str
    doc: str


def reference_roots() -> list[tuple[str, type]]:
    """(section title, config class) of every role this distribution ships, one section per config class."""
    from fluxon_core.runtime.roles import registered_roles

    roles = registered_roles()
    origins = {info.name: info.origin for info in get_plugin_manager().plugins()}
    names_by_type: dict[type, list[str]] = {}
    # The core's roles first, then the shipped plugins' (third-party roles must not change the reference).
    for role in sorted(roles.values(), key=lambda role: (origins.get(role.plugin) != "core", role.name)):
        if origins.get(role.plugin) in ("default", "core"):
            names_by_type.setdefault(role.config_type, []).append(role.name)
    roots = []
    for config_type, names in names_by_type.items():
        summary = (config_type.__doc__ or config_type.__name__).strip().splitlines()[0].rstrip(".")
        starts = ", ".join(f"`fluxon start {name} -c F`" for name in names)
        roots.append((f"{summary} ({starts})", config_type))
    return roots


def _inner_attrs(tp: Any) -> tuple[type | None, str]:
    """The attrs class nested in ``tp`` (through Optional/list/dict) and the path suffix to reach it."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if attrs.has(tp) and tp is not BackendConfig:
        return tp, ""
    if origin in (list, tuple, collections.abc.Sequence) and args:
        inner, suffix = _inner_attrs(args[0])
        return inner, "[]" + suffix
    if origin in (dict, collections.abc.Mapping) and args:
        inner, suffix = _inner_attrs(args[1])
        return inner, "['<name>']" + suffix
    if args:
        for arg in args:
            if arg is not type(None):
                inner, suffix = _inner_attrs(arg)
                if inner is not None:
                    return inner, suffix
    return None, ""


def _default_text(field: attrs.Attribute) -> str:  # type: ignore[type-arg]
    if field.default is attrs.NOTHING:
        return "required"
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()
    value = dump_config(default)
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def rows_for(cls: type, prefix: str) -> list[ReferenceRow]:
    """Rows for every field of ``cls`` and its nested config classes."""
    rows: list[ReferenceRow] = []
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        path = f"{prefix}.{field.name}" if prefix else field.name
        tp = hints[field.name]
        doc = field.metadata.get("doc", "")
        category = field.metadata.get("backend")
        type_text = f"{category} backend block (`kind:` + options)" if category else describe_type(tp)
        rows.append(ReferenceRow(path, type_text, _default_text(field), doc))
        inner, suffix = _inner_attrs(tp)
        if inner is not None:
            rows.extend(rows_for(inner, path + suffix))
    return rows


def host_set_fields(category: str) -> dict[str, str]:
    """Options of ``category``'s kinds that no config may set, with where the host takes each from.

    The only block of the ``cache`` category is the KV plane's ``pool``, which refuses the placement
    fields and fills them itself; listing them as options would document keys that no YAML accepts.
    """
    if category != "cache":
        return {}
    from fluxon_core.kv.pool import PLACEMENT_FIELDS  # here: fluxon_core.kv imports this package

    return PLACEMENT_FIELDS


def _table(rows: list[ReferenceRow]) -> list[str]:
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for row in rows:
        doc = row.doc.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{row.path}` | {row.type_text} | {row.default_text} | {doc} |")
    return lines


def render_reference() -> str:
    """The generated part of ``docs/configuration.md``."""
    lines = [BEGIN_MARK, ""]
    for title, config_type in reference_roots():
        lines += [f"### {title}", "", *_table(rows_for(config_type, "")), ""]
    manager = get_plugin_manager()
    registry = manager.backends()
    # Only what this distribution ships: installed third-party or test plugins must not change the reference.
    shipped = {info.name for info in manager.plugins() if info.origin in ("default", "core")}
    lines += ["### Backend kinds and their options", ""]
    lines += [
        "A backend block selects a kind with `kind:` and carries that kind's options in a block named",
        "after the kind, e.g. `transfer_state_store: {kind: sqlite, sqlite: {path: ...}}`.",
        "",
    ]
    for category in REGISTER_HOOKS:
        for kind in registry.kinds(category):
            entry = registry.entry(category, kind)
            if entry.plugin not in shipped:
                continue
            lines.append(f"#### {category} `{kind}` (plugin `{entry.plugin}`)")
            lines.append("")
            host_set = host_set_fields(category)
            rows = [] if entry.config_type is None else rows_for(entry.config_type, f"<block>.{kind}")
            settable = [row for row in rows if row.path.split(".")[2] not in host_set]
            lines += [*_table(settable), ""] if settable else ["Takes no options.", ""]
            set_by_host = [name for name in host_set if any(row.path.split(".")[2] == name for row in rows)]
            if set_by_host:
                where = "; ".join(f"`{name}` from {host_set[name]}" for name in set_by_host)
                lines += [f"Not options: the KV plane sets {where}.", ""]
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def splice(document: str, generated: str) -> str:
    """Replace the generated block inside ``document``."""
    head, sep, rest = document.partition(BEGIN_MARK)
    if not sep:
        raise ValueError("docs/configuration.md lacks the BEGIN GENERATED REFERENCE marker")
    _, sep2, tail = rest.partition(END_MARK)
    if not sep2:
        raise ValueError("docs/configuration.md lacks the END GENERATED REFERENCE marker")
    return head + generated.rstrip("\n") + tail


def main(argv: list[str] | None = None) -> int:
    """CLI: print the reference, or ``--write FILE`` to update it in place."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", metavar="FILE", help="update the generated block of FILE")
    args = parser.parse_args(argv)
    generated = render_reference()
    if args.write:
        target = Path(args.write)
        target.write_text(splice(target.read_text(encoding="utf-8"), generated), encoding="utf-8")
    else:
        sys.stdout.write(generated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
