"""The one codec of the fs master protocol: records ⇄ JSON-able dicts, strictly.

Records are read with the project's strict loader (:func:`fluxon_core.config.load_config`): a
missing field, an unknown key or a value of the wrong type is refused and nothing is coerced. Every
refusal is an :class:`~fluxon_core.errors.InvalidArgumentError` naming the path and the field, e.g.
``/fluxon_fs/transfer/renew request: number must be an integer, got string '3'``.

A record travels as its fields, except where the wire keeps the shape every peer already speaks:

* a job (:class:`JobView`) is its record's fields with ``throughput_bytes_per_s`` and
  ``state_store_error`` beside them;
* batch states leave the master without their claim tokens;
* an unchanged export snapshot is only ``version`` and ``unchanged``; a changed one's ``cache``
  has no ``rules`` (they describe each client's own host);
* a user that does not exist is only ``{"exists": false}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from fluxon_core.config import ConfigError, dump_config, load_config
from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.master_api.calls import CALLS_BY_PATH, Call
from fluxon_fs.master_api.records import (
    ExportSnapshotReply,
    JobActionReply,
    JobListReply,
    JobReply,
    JobView,
    UserAccessReply,
)

T = TypeVar("T")
ReplyT = TypeVar("ReplyT")


def to_wire(record: Any) -> dict[str, Any]:
    """The JSON-able dict of a record."""
    plain: dict[str, Any] = dump_config(record)
    shape = _SHAPES.get(type(record))
    return plain if shape is None else shape.to_wire(plain)


def from_wire(record_type: type[T], data: Any, where: str) -> T:
    """The record of type ``record_type`` that ``data`` holds; ``where`` starts every error message."""
    shape = _SHAPES.get(record_type)
    if shape is not None and isinstance(data, Mapping):
        data = shape.from_wire(data)
    try:
        record: T = load_config(record_type, data)
    except ConfigError as exc:
        field = "payload" if exc.path == "<root>" else exc.path
        raise InvalidArgumentError(f"{where}: {field} {exc.expectation}") from None
    return record


def encode_request(call: Call[Any, Any], request: Any) -> dict[str, Any]:
    """The payload sending ``request`` as ``call``."""
    data = to_wire(request)
    return data if call.op is None else {"op": call.op, **data}


SERVICE_AUTH_KEY = "service_auth"
"""The envelope key of a service token; the record codec never sees it."""


def with_service_auth(payload: dict[str, Any], token: str) -> dict[str, Any]:
    """``payload`` carrying the service token ``token``."""
    return {**payload, SERVICE_AUTH_KEY: token}


def split_service_auth(payload: Any) -> tuple[str | None, Any]:
    """The service token a payload carries (None without one) and the payload without it."""
    if not isinstance(payload, Mapping) or SERVICE_AUTH_KEY not in payload:
        return None, payload
    token = payload[SERVICE_AUTH_KEY]
    return (token if isinstance(token, str) else None), {k: v for k, v in payload.items() if k != SERVICE_AUTH_KEY}


def call_of(path: str, payload: Any) -> Call[Any, Any]:
    """Which call a payload received on ``path`` is (its fields are not looked at yet)."""
    calls = CALLS_BY_PATH.get(path)
    if calls is None:
        raise InvalidArgumentError(f"{path} is not a path of the fs master")
    if len(calls) == 1 and calls[0].op is None:
        return calls[0]
    op = payload.get("op") if isinstance(payload, Mapping) else None
    for call in calls:
        if call.op == op:
            return call
    expected = ", ".join(repr(call.op) for call in calls)
    raise InvalidArgumentError(f"{path} request: op must be one of {expected}, got {op!r}")


def decode_request(path: str, payload: Any) -> tuple[Call[Any, Any], Any]:
    """Which call a payload received on ``path`` is, and its request record."""
    call = call_of(path, payload)
    fields = payload
    if call.op is not None:
        fields = {key: value for key, value in payload.items() if key != "op"}
    return call, from_wire(call.request, fields, f"{path} request")


def decode_reply(call: Call[Any, ReplyT], payload: Any) -> ReplyT:
    """The reply record of ``call`` that ``payload`` holds."""
    return from_wire(call.reply, payload, f"{call.path} reply")


# ----- records whose wire form is not just their fields ---------------------------------------------


@attrs.frozen
class _Shape:
    """How a record's wire dict differs from the dict of its fields."""

    to_wire: Callable[[dict[str, Any]], dict[str, Any]]
    from_wire: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    """Must leave malformed input to the loader, which names what is wrong with it."""


def _as_is(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return data


def _with(data: Mapping[str, Any], key: str, convert: Callable[[Any], Any]) -> dict[str, Any]:
    """``data`` with its ``key`` (when present) converted."""
    return {**data, key: convert(data[key])} if key in data else dict(data)


def _each(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda items: [convert(item) for item in items] if isinstance(items, list) else items


_JOB_VIEW_ADDITIONS = ("throughput_bytes_per_s", "state_store_error")


def _job_view_to_wire(plain: dict[str, Any]) -> dict[str, Any]:
    return {**plain["job"], **{key: plain[key] for key in _JOB_VIEW_ADDITIONS}}


def _job_view_from_wire(wire: Any) -> Any:
    if not isinstance(wire, Mapping):
        return wire
    record = {key: value for key, value in wire.items() if key not in _JOB_VIEW_ADDITIONS}
    return {"job": record, **{key: wire[key] for key in _JOB_VIEW_ADDITIONS if key in wire}}


def _without_claim_token(batch: dict[str, Any]) -> dict[str, Any]:
    # A claim token is the worker's proof that it holds the batch; only the claiming worker gets it.
    return {key: value for key, value in batch.items() if key != "claim_token"}


def _snapshot_to_wire(plain: dict[str, Any]) -> dict[str, Any]:
    if plain["unchanged"]:
        return {"version": plain["version"], "unchanged": True}
    return {**plain, "cache": {key: value for key, value in plain["cache"].items() if key != "rules"}}


def _user_access_to_wire(plain: dict[str, Any]) -> dict[str, Any]:
    return plain if plain["exists"] else {"exists": False}


_SHAPES: dict[type, _Shape] = {
    JobView: _Shape(_job_view_to_wire, _job_view_from_wire),
    JobListReply: _Shape(
        lambda plain: _with(plain, "jobs", _each(_job_view_to_wire)),
        lambda wire: _with(wire, "jobs", _each(_job_view_from_wire)),
    ),
    JobReply: _Shape(
        lambda plain: _with(_with(plain, "job", _job_view_to_wire), "batches", _each(_without_claim_token)),
        lambda wire: _with(wire, "job", _job_view_from_wire),
    ),
    JobActionReply: _Shape(
        lambda plain: _with(plain, "job", _job_view_to_wire),
        lambda wire: _with(wire, "job", _job_view_from_wire),
    ),
    ExportSnapshotReply: _Shape(_snapshot_to_wire, _as_is),
    UserAccessReply: _Shape(_user_access_to_wire, _as_is),
}
