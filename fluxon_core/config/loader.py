"""The one config loader: mapping -> frozen attrs instance, strictly.

Rules: an unknown key, a wrong type, a missing required field or a value failing its check raises
:class:`ConfigError` (or :class:`ConfigTypeError`) naming the full dotted path, e.g.
``fluxon_fs.cache.exports['demo'].cache_max_bytes must be > 0``. A config class may define
``__config_validate__(self) -> list[tuple[str, str]]`` returning ``(relative_path, expectation)``
problems for rules that span several fields.
"""

from __future__ import annotations

import enum
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import attrs
import yaml

from fluxon_core.config.backend import BackendConfig
from fluxon_core.config.errors import ConfigError, ConfigTypeError
from fluxon_core.config.units import ByteSize, parse_byte_size


def join_path(base: str, name: str) -> str:
    """Dotted path of field ``name`` under ``base``."""
    return f"{base}.{name}" if base else name


def load_config(cls: type, data: Any, path: str = "") -> Any:
    """Build ``cls`` (an attrs class) from ``data``; ``path`` prefixes every error."""
    return _convert(cls, data, path, backend=None)


def load_yaml_text(cls: type, text: str, path: str = "") -> Any:
    """Parse YAML text and load it as ``cls``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"is not valid YAML: {exc}") from None
    return load_config(cls, {} if data is None else data, path)


def load_yaml_file(cls: type, file_path: str | os.PathLike[str], path: str = "") -> Any:
    """Read a YAML file and load it as ``cls``; a missing file is a clear error."""
    try:
        with open(file_path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(str(file_path), "does not exist; expected a YAML config file") from None
    return load_yaml_text(cls, text, path)


def dump_config(obj: Any) -> Any:
    """Plain YAML-ready data from a loaded config (inverse of :func:`load_config`)."""
    if isinstance(obj, BackendConfig):
        out: dict[str, Any] = {"kind": obj.kind}
        if obj.options is not None:
            out[obj.kind] = dump_config(obj.options)
        return out
    if attrs.has(type(obj)):
        return {f.name: dump_config(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {k: dump_config(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [dump_config(v) for v in obj]
    return obj


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


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
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_describe(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin in (list, tuple):
        return f"list of {_describe(args[0])}" if args else "list"
    if origin in (dict, Mapping):
        return f"mapping of string to {_describe(args[1])}" if args else "mapping"
    if tp is BackendConfig:
        return "backend block"
    if attrs.has(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


describe_type = _describe


def _convert(tp: Any, value: Any, path: str, backend: str | None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, backend)
        for candidate in inner:
            try:
                return _convert(candidate, value, path, backend)
            except ConfigError:
                continue
        raise ConfigTypeError(path, f"must be {_describe(tp)}, got {_type_name(value)} {value!r}")
    if value is None:
        raise ConfigTypeError(path, f"must be {_describe(tp)}, got null")
    if tp is ByteSize:
        try:
            return parse_byte_size(value)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigTypeError(path, f"must be a boolean (true/false), got {_type_name(value)} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigTypeError(path, f"must be an integer, got {_type_name(value)} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigTypeError(path, f"must be a number, got {_type_name(value)} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigTypeError(path, f"must be a string, got {_type_name(value)} {value!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if member.value == value or (isinstance(value, str) and member.name == value.upper()):
                return member
        raise ConfigError(path, f"must be {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(path, f"must be {_describe(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigTypeError(path, f"must be a list, got {_type_name(value)} {value!r}")
        items = [_convert(args[0], item, f"{path}[{i}]", backend) for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigTypeError(path, f"must be a mapping, got {_type_name(value)} {value!r}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigTypeError(f"{path}[{key!r}]", "key must be a string")
            out[key] = _convert(args[1], item, f"{path}[{key!r}]", backend)
        return out
    if tp is BackendConfig:
        return _convert_backend(value, path, backend)
    if attrs.has(tp):
        return _convert_attrs(tp, value, path)
    raise ConfigTypeError(path, f"has an unsupported declared type {tp!r}")


def _convert_attrs(cls: type, value: Any, path: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigTypeError(path, f"must be a mapping, got {_type_name(value)} {value!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    for key in value:
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(join_path(path, str(key)), f"is not a known field; expected one of: {known}")
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
            if problem:
                raise ConfigError(field_path, problem)
        kwargs[name] = converted
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
    from fluxon_core.plugins import get_backends

    if isinstance(value, BackendConfig):
        return value
    if not isinstance(value, Mapping):
        raise ConfigTypeError(path, f"must be a mapping with a 'kind' key, got {_type_name(value)} {value!r}")
    if "kind" not in value:
        raise ConfigError(join_path(path, "kind"), "is required (the backend kind to use)")
    kind = value["kind"]
    if not isinstance(kind, str):
        raise ConfigTypeError(join_path(path, "kind"), f"must be a string, got {_type_name(kind)} {kind!r}")
    if category is None:
        raise ConfigTypeError(path, "is a backend block without a declared category")
    registry = get_backends()
    try:
        entry = registry.entry(category, kind)
    except ValueError as exc:
        raise ConfigError(join_path(path, "kind"), str(exc)) from None
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
    return BackendConfig(
        kind=kind, options=_convert_attrs(entry.config_type, options_data or {}, join_path(path, kind))
    )
