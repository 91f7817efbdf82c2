"""The one config loader: mapping -> frozen attrs instance, strictly.

Rules: an unknown key, a wrong type, a missing required field or a value failing its check raises
:class:`ConfigError` (or :class:`ConfigTypeError`) naming the full dotted path, e.g.
``fluxon_fs.cache.exports['demo'].cache_max_bytes must be > 0``. Nothing is coerced: ``"5"`` is not
an integer and ``true`` is not ``1``. A config class may define
``__config_validate__(self) -> list[tuple[str, str]]`` returning ``(relative_path, expectation)``
problems for rules that span several fields.

Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, :data:`ByteSize`, other
``NewType`` s of these, enums (by value, or by member name in any case), ``Literal``, unions
including ``X | None``, ``list[X]``, ``tuple[X, ...]``, fixed ``tuple[X, Y]``, ``Sequence[X]``
(loaded as a tuple), ``dict[K, V]`` / ``Mapping[K, V]``, nested attrs classes, :class:`BackendConfig`
(with ``config_field(backend=...)``) and ``Any``.
"""

from __future__ import annotations

import collections.abc
import difflib
import enum
import functools
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import attrs
import yaml

from fluxon_core.config.backend import BackendConfig
from fluxon_core.config.errors import ConfigError, ConfigTypeError
from fluxon_core.config.fields import ElementProblem
from fluxon_core.config.units import ByteSize, parse_byte_size

_SEQUENCE_ORIGINS = (list, tuple, collections.abc.Sequence)
_MAPPING_ORIGINS = (dict, collections.abc.Mapping)
_YAML_TYPE_NAMES: dict[type, str] = {dict: "mapping", list: "list"}


def join_path(base: str, name: str) -> str:
    """Dotted path of field ``name`` under ``base``."""
    return f"{base}.{name}" if base else name


def load_config(cls: type, data: Any, path: str = "") -> Any:
    """Build ``cls`` (an attrs class) from ``data``; ``path`` prefixes every error."""
    return _convert(cls, data, path, backend=None)


def load_backend_block(category: str, data: Any, path: str) -> BackendConfig:
    """Parse ``{kind: NAME, NAME: {options}}`` of backend ``category`` found at ``path``.

    The same parsing as a ``config_field(backend=category)`` field, for code that selects a kind
    outside such a field: an unknown kind names ``<path>.kind`` and lists the installed kinds.
    """
    return _convert_backend(data, path, category)


def parse_yaml_text(text: str, path: str = "") -> Any:
    """Parse YAML text into plain data; syntax errors and duplicate keys raise :class:`ConfigError`.

    PyYAML silently keeps the last of two equal keys; a config that says the same thing twice is
    more likely a mistake, so it is refused, naming the key and both lines.
    """
    try:
        # The reader checks every character when it is built: a NUL or another control character
        # YAML forbids raises ReaderError here, before parsing starts.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"is not valid YAML {_yaml_problem(exc, text)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _reject_duplicate_keys(node, path, set())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"is not valid YAML {_yaml_problem(exc, text)}") from None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line locating a YAML syntax error: PyYAML's own text spans several lines."""
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        shown = "NUL" if exc.character == 0 else f"U+{exc.character:04X}"
        return f"at line {line}, column {column}: contains the character {shown}, which YAML does not allow"
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f": {exc}"
    mark = exc.problem_mark
    text = f"at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        context = exc.context_mark
        text += f" ({exc.context} at line {context.line + 1}, column {context.column + 1})"
    return text


def _reject_duplicate_keys(node: yaml.Node, path: str, visited: set[int]) -> None:
    if id(node) in visited:  # anchors share nodes, and may even form cycles
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key in first_line:
                raise ConfigError(join_path(path, str(key)), f"is given twice (lines {first_line[key]} and {line})")
            if key is not None:
                first_line[key] = line
            _reject_duplicate_keys(value_node, join_path(path, str(key)), visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(item, f"{path}[{index}]", visited)


def load_yaml_text(cls: type, text: str, path: str = "") -> Any:
    """Parse YAML text and load it as ``cls``."""
    data = parse_yaml_text(text, path)
    return load_config(cls, {} if data is None else data, path)


def read_yaml_file(file_path: str | os.PathLike[str], path: str = "") -> Any:
    """Plain data from a YAML file; a missing file or bad YAML is a :class:`ConfigError` naming the file."""
    try:
        with open(file_path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(str(file_path), "does not exist; expected a YAML config file") from None
    except IsADirectoryError:
        raise ConfigError(str(file_path), "is a directory; expected a YAML config file") from None
    try:
        return parse_yaml_text(text, path)
    except ConfigError as exc:
        raise exc.with_source(str(file_path)) from None


def load_yaml_file(cls: type, file_path: str | os.PathLike[str], path: str = "") -> Any:
    """Read a YAML file and load it as ``cls``; every error also names the file."""
    data = read_yaml_file(file_path, path)
    try:
        return load_config(cls, {} if data is None else data, path)
    except ConfigError as exc:
        raise exc.with_source(str(file_path)) from None


def dump_config(obj: Any) -> Any:
    """Plain YAML-ready data from a loaded config (inverse of :func:`load_config`)."""
    if isinstance(obj, BackendConfig):
        out: dict[str, Any] = {"kind": obj.kind}
        if obj.options is not None:
            out[obj.kind] = dump_config(obj.options)
        return out
    if attrs.has(type(obj)):
        return {f.name: dump_config(getattr(obj, f.name)) for f in attrs.fields(type(obj)) if f.init}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {k: dump_config(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [dump_config(v) for v in obj]
    return obj


def _show(value: Any) -> str:
    """A value as errors quote it: its YAML-ish type and repr."""
    if value is None:
        return "null"
    kind = _YAML_TYPE_NAMES.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text if len(text) <= 80 else text[:77] + '...'}"


def _enum_names_differ(tp: type[enum.Enum]) -> bool:
    return any(not (isinstance(m.value, str) and m.value.lower() == m.name.lower()) for m in tp)


def _describe(tp: Any) -> str:
    """Human description of an expected type, used in errors and the reference."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is ByteSize:
        return "byte size"
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer"
    if tp is float:
        return "number"
    if tp is str:
        return "string"
    if tp is Any:
        return "any"
    if isinstance(tp, typing.NewType):
        return _describe(tp.__supertype__)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        text = "one of " + ", ".join(repr(m.value) for m in tp)
        return f"{text} (or by name: {', '.join(m.name for m in tp)})" if _enum_names_differ(tp) else text
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_describe(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if tp in (list, tuple):
        return "list"
    if origin in _SEQUENCE_ORIGINS:
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"list of exactly {len(args)} items ({', '.join(_describe(a) for a in args)})"
        return f"list of {_describe(args[0])}" if args else "list"
    if tp is dict:
        return "mapping"
    if origin in _MAPPING_ORIGINS:
        return f"mapping of {_describe(args[0])} to {_describe(args[1])}" if args else "mapping"
    if tp is BackendConfig:
        return "backend block"
    if attrs.has(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


describe_type = _describe


@functools.cache
def _resolved_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_hints(cls: type, path: str) -> dict[str, Any]:
    try:
        return _resolved_hints(cls)
    except NameError as exc:
        # A config class defined inside a function cannot name other local classes in string annotations.
        raise ConfigTypeError(
            path, f"cannot be loaded: an annotation of {cls.__qualname__} does not resolve ({exc})"
        ) from None


def _convert(tp: Any, value: Any, path: str, backend: str | None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path, backend)
    if value is None:
        raise ConfigTypeError(path, f"is null; expected {_describe(tp)}")
    if tp is ByteSize:
        try:
            return parse_byte_size(value)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None
    if isinstance(tp, typing.NewType):
        return _convert(tp.__supertype__, value, path, backend)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigTypeError(path, f"must be a boolean (true/false), got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigTypeError(path, f"must be an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigTypeError(path, f"must be a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigTypeError(path, f"must be a string, got {_show(value)}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _convert_enum(tp, value, path)
    if origin is Literal:
        # Compare types too: True == 1 and 1.0 == 1 in Python, but not in a config.
        if not any(type(arg) is type(value) and arg == value for arg in args):
            raise ConfigError(path, f"must be {_describe(tp)}, got {_show(value)}")
        return value
    if tp in (list, tuple) or origin in _SEQUENCE_ORIGINS:
        return _convert_sequence(tp, value, path, backend)
    if tp is dict or origin in _MAPPING_ORIGINS:
        return _convert_mapping(tp, value, path, backend)
    if tp is BackendConfig:
        return _convert_backend(value, path, backend)
    if attrs.has(tp):
        return _convert_attrs(tp, value, path)
    raise ConfigTypeError(path, f"has an unsupported declared type {tp!r}")


def _convert_union(tp: Any, value: Any, path: str, backend: str | None) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    inner = [a for a in args if a is not type(None)]
    if len(inner) == 1:
        return _convert(inner[0], value, path, backend)
    errors: list[ConfigError] = []
    for candidate in inner:
        try:
            return _convert(candidate, value, path, backend)
        except ConfigError as exc:
            errors.append(exc)
    # When exactly one alternative got past the outer shape, its inner error is the useful one.
    deeper = [exc for exc in errors if exc.path != (path or "<root>")]
    if len(deeper) == 1:
        raise deeper[0]
    raise ConfigTypeError(path, f"must be {_describe(tp)}, got {_show(value)}")


def _convert_enum(tp: type[enum.Enum], value: Any, path: str) -> enum.Enum:
    if isinstance(value, tp):
        return value
    for member in tp:
        if type(member.value) is type(value) and member.value == value:
            return member
    if isinstance(value, str):
        by_name = [member for member in tp if member.name.lower() == value.lower()]
        if len(by_name) == 1:
            return by_name[0]
    raise ConfigError(path, f"must be {_describe(tp)}, got {_show(value)}")


def _convert_sequence(tp: Any, value: Any, path: str, backend: str | None) -> Any:
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if not isinstance(value, list | tuple):
        raise ConfigTypeError(path, f"must be {_describe(tp)}, got {_show(value)}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(path, f"must be {_describe(tp)}, got {len(value)} items")
        return tuple(
            _convert(arg, item, f"{path}[{i}]", backend) for i, (arg, item) in enumerate(zip(args, value, strict=True))
        )
    item_type = args[0] if args else Any
    items = [_convert(item_type, item, f"{path}[{i}]", backend) for i, item in enumerate(value)]
    return items if origin is list else tuple(items)


def _convert_mapping(tp: Any, value: Any, path: str, backend: str | None) -> dict[Any, Any]:
    key_type, item_type = typing.get_args(tp) or (str, Any)
    if not isinstance(value, Mapping):
        raise ConfigTypeError(path, f"must be {_describe(tp)}, got {_show(value)}")
    out = {}
    for key, item in value.items():
        item_path = f"{path}[{key!r}]"
        try:
            converted_key = _convert(key_type, key, item_path, None)
        except ConfigError as exc:
            raise ConfigTypeError(item_path, f"is not a valid key: {exc.expectation}") from None
        out[converted_key] = _convert(item_type, item, item_path, backend)
    return out


def _convert_attrs(cls: type, value: Any, path: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigTypeError(path, f"must be a mapping, got {_show(value)}")
    hints = _type_hints(cls, path)
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(join_path(path, str(key)), f"is not a known field; {hint}expected one of: {known}")
    kwargs = {}
    for name, field in fields.items():
        field_path = join_path(path, name)
        if name not in value:
            if field.default is attrs.NOTHING:
                raise ConfigError(field_path, f"is required ({_describe(hints[name])})")
            continue
        converted = _convert(hints[name], value[name], field_path, field.metadata.get("backend"))
        check = field.metadata.get("check")
        if check is not None and converted is not None:
            problem = check(converted)
            if isinstance(problem, ElementProblem):
                raise ConfigError(field_path + problem.suffix, problem.expectation)
            if problem:
                raise ConfigError(field_path, problem)
        kwargs[field.alias or name] = converted
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, f"is invalid: {exc}") from None
    validate = getattr(obj, "__config_validate__", None)
    if validate is not None:
        for rel, problem in validate():
            raise ConfigError(join_path(path, rel), problem)
    return obj


def _convert_backend(value: Any, path: str, category: str | None) -> BackendConfig:
    from fluxon_core.plugins import PluginError, UnknownBackendError, get_backends

    if isinstance(value, BackendConfig):
        return value
    if not isinstance(value, Mapping):
        raise ConfigTypeError(path, f"must be a mapping with a 'kind' key, got {_show(value)}")
    if category is None:
        raise ConfigTypeError(path, "is a backend block, but its field declares no config_field(backend=...) category")
    if "kind" not in value:
        raise ConfigError(join_path(path, "kind"), f"is required (the {category} kind to use)")
    kind = value["kind"]
    if not isinstance(kind, str):
        raise ConfigTypeError(join_path(path, "kind"), f"must be a string, got {_show(kind)}")
    try:
        entry = get_backends().entry(category, kind)
    except (UnknownBackendError, PluginError) as exc:
        raise ConfigError(join_path(path, "kind"), f"is not usable: {exc}") from None
    for key in value:
        if key not in ("kind", kind):
            raise ConfigError(
                join_path(path, str(key)),
                f"is not a known field; a {category} block holds 'kind' and an options block named '{kind}'",
            )
    options_data = value.get(kind)
    if entry.config_type is None:
        if options_data not in (None, {}):
            raise ConfigError(join_path(path, kind), f"must be absent: {category} kind {kind!r} takes no options")
        return BackendConfig(kind=kind, options=None)
    options = _convert_attrs(entry.config_type, {} if options_data is None else options_data, join_path(path, kind))
    return BackendConfig(kind=kind, options=options)
