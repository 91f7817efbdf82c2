"""The one codec of transfer records: attrs records ⇄ JSON, in the state store and in RPC payloads.

Encoding is :func:`attr.asdict` with enums as their values: tuples (named ones too) become lists,
nested records mappings; :func:`encode` writes compact JSON with sorted keys, so one record always has one byte
form (updates compare bytes, and compare-and-set needs the bytes it read).

Decoding has one policy, whoever wrote the data (an older or newer fs master, a pre-scan process,
an agent, the CLI):

* a field the record does not declare is ignored — a newer writer may have added it;
* a missing field takes its default — an older writer did not know it; a missing field without a
  default raises;
* a value of the wrong type raises; nothing is coerced, except that an integer is accepted where
  a float is declared and a JSON list where a tuple is;
* an enum field takes one of its values.

Errors are :class:`~fluxon_core.errors.InvalidArgumentError` naming where the record came from
(its state store key, or the payload field) and the field, e.g.
``jobs/job-1: field 'spec.source_export' is required (str)``.

Supported field types: ``str``, ``int``, ``float``, ``bool``, enums, ``tuple[X, ...]``,
``list[X]``, named tuples and nested attrs records.
"""

from __future__ import annotations

import enum
import functools
import json
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import attr
import attrs

from fluxon_core.errors import InvalidArgumentError

R = TypeVar("R")

# Turns one JSON value into the declared type, or raises _Mismatch saying what was expected.
_Decoder = Callable[[Any], Any]


class _Mismatch(Exception):
    """A value does not fit its declared type; ``field`` is the path below the failing field."""

    def __init__(self, problem: str, field: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.field = field


def _plain(_instance: Any, _field: Any, value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def to_json(record: Any) -> dict[str, Any]:
    """The JSON-ready form of an attrs record (plain dicts, lists, strings and numbers)."""
    return attr.asdict(record, retain_collection_types=False, value_serializer=_plain)


def encode(record: Any) -> bytes:
    """The stored form of an attrs record: compact JSON with sorted keys."""
    return json.dumps(to_json(record), separators=(",", ":"), sort_keys=True).encode()


def from_json(cls: type[R], data: Any, where: str) -> R:
    """Build ``cls`` from its JSON form under the module's decode policy; ``where`` names the source."""
    record_type: type = cls  # functools.cache wants a hashable; a class is one
    try:
        return typing.cast(R, _record_decoder(record_type)(data))
    except _Mismatch as exc:
        field = f"field {exc.field!r} " if exc.field else ""
        raise InvalidArgumentError(f"{where}: {field}{exc.problem}") from None


def decode(cls: type[R], data: bytes, where: str) -> R:
    """Build ``cls`` from its stored form (see :func:`from_json`)."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise InvalidArgumentError(f"{where}: not a JSON record ({exc})") from None
    return from_json(cls, raw, where)


def _got(value: Any) -> str:
    return f"got {type(value).__name__} {value!r}"[:200]


@functools.cache
def _record_decoder(cls: type) -> _Decoder:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, f.alias or f.name, f.default is attrs.NOTHING) for f in attrs.fields(cls) if f.init]
    decoders = {name: _decoder(hints[name]) for name, _, _ in fields}

    def decode_record(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Mismatch(f"must be a mapping of {cls.__name__} fields, {_got(value)}")
        kwargs = {}
        for name, alias, required in fields:
            if name not in value:
                if required:
                    raise _Mismatch(f"is required ({_type_name(hints[name])})", name)
                continue
            try:
                kwargs[alias] = decoders[name](value[name])
            except _Mismatch as exc:
                below = f".{exc.field}" if exc.field and not exc.field.startswith("[") else exc.field
                raise _Mismatch(exc.problem, name + below) from None
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise _Mismatch(f"is not a valid {cls.__name__}: {exc}") from None

    return decode_record


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _scalar(tp: type) -> _Decoder:
    def decode_scalar(value: Any) -> Any:
        # bool is an int in Python but not in a record; an int is a fine float.
        if isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
            return value
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch(f"must be {tp.__name__}, {_got(value)}")

    return decode_scalar


def _enum(tp: type[enum.Enum]) -> _Decoder:
    values = {member.value: member for member in tp}

    def decode_enum(value: Any) -> Any:
        try:
            return values[value]
        except (KeyError, TypeError):
            raise _Mismatch(f"must be one of {sorted(values)}, {_got(value)}") from None

    return decode_enum


def _sequence(item: _Decoder, make: Callable[[list[Any]], Any]) -> _Decoder:
    def decode_sequence(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _Mismatch(f"must be a list, {_got(value)}")
        items = []
        for index, element in enumerate(value):
            try:
                items.append(item(element))
            except _Mismatch as exc:
                raise _Mismatch(exc.problem, f"[{index}]{exc.field}") from None
        return make(items)

    return decode_sequence


def _named_tuple(tp: type) -> _Decoder:
    hints = typing.get_type_hints(tp)
    decoders = [_decoder(hints[name]) for name in tp._fields]  # type: ignore[attr-defined]

    def decode_row(value: Any) -> Any:
        if not isinstance(value, list | tuple) or len(value) != len(decoders):
            raise _Mismatch(f"must be a list of {len(decoders)} values ({', '.join(tp._fields)}), {_got(value)}")  # type: ignore[attr-defined]
        return tp(*(decode(element) for decode, element in zip(decoders, value, strict=True)))

    return decode_row


def _decoder(tp: Any) -> _Decoder:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in (str, int, float, bool):
        return _scalar(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _sequence(_decoder(args[0]), tuple)
    if origin is list and len(args) == 1:
        return _sequence(_decoder(args[0]), list)
    if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
        return _named_tuple(tp)
    if attrs.has(tp):
        return _record_decoder(tp)
    raise TypeError(f"transfer record codec: unsupported field type {tp!r}")
