"""The codec between :class:`~fluxon_fs.export.ops.ExportOps` calls and RPC messages.

Each operation is served at ``/fluxon_fs/<export>/<op>``; :data:`OPS` declares, per operation, the
argument names (exactly the ``ExportOps`` parameter names), whether it changes the export and
the shape of its answer. Arguments travel in the small JSON ``meta``; bulk bytes never do:

* ``write_chunk``/``session_write`` send their payload as the request's single frame;
* ``read_chunk`` answers ``{"stat": [...]}`` plus the data as the single frame;
* ``list_dir`` answers ``{"count": n}`` plus one frame of packed entries (:func:`pack_entries`);
* ``session_open`` answers the session id and stat, and the agent's same-host write channel when it has one.

Stats travel as :meth:`FileStat.to_wire` lists. Paths are JSON strings; a path that is not valid
UTF-8 (a file name from ``os.fsdecode`` holding surrogate escapes) travels as
``{"fs_hex": <hex of its file-system bytes>}`` so every name round-trips exactly.

Errors are not part of this codec: a handler raises, and the RPC layer
(:func:`fluxon_core.rpc.encode_error`/``decode_error``) brings an ``OSError`` back as an
``OSError`` with the same errno, strerror and filenames, and an ``ApiError`` as its own class.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from fluxon_core.errors import InvalidArgumentError, NetworkError
from fluxon_core.rpc_types import Buffer, RpcMessage
from fluxon_fs.export.ops import DirEntryInfo, FileStat, WriteSessionInfo
from fluxon_fs.export.same_host.protocol import SameHostAddress

PATH_PREFIX = "/fluxon_fs/"
_PATH_FIELDS = frozenset({"relpath", "src_relpath", "dst_relpath"})
"""Arguments that hold export-relative paths."""


@attrs.frozen
class OpSpec:
    """One export operation on the wire."""

    name: str
    fields: tuple[str, ...]
    """Argument names, as the ExportOps method spells them (``data`` travels as the frame)."""
    reply: str
    """``none`` | ``stat`` | ``read`` | ``entries`` | ``session``."""
    is_write: bool
    path_fields: tuple[str, ...] = attrs.field(init=False)
    """The arguments holding export-relative paths (what access control checks on every request)."""

    @path_fields.default
    def _path_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f in _PATH_FIELDS)


def _spec(name: str, fields: str, reply: str, is_write: bool) -> OpSpec:
    return OpSpec(name, tuple(fields.split()), reply, is_write)


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        _spec("stat", "relpath follow_symlinks", "stat", False),
        _spec("list_dir", "relpath", "entries", False),
        _spec("read_chunk", "relpath offset length", "read", False),
        _spec("write_chunk", "relpath offset data", "stat", True),
        _spec("truncate", "relpath length", "stat", True),
        _spec("mkdir", "relpath mode", "none", True),
        _spec("rmdir", "relpath", "none", True),
        _spec("unlink", "relpath", "none", True),
        _spec("rename", "src_relpath dst_relpath", "none", True),
        _spec("chmod", "relpath mode", "none", True),
        _spec("utime", "relpath times_ns", "none", True),
        _spec("session_open", "relpath create exclusive truncate mode", "session", True),
        _spec("session_write", "session_id offset data", "none", True),
        _spec("session_flush", "session_id", "stat", True),
        _spec("session_finalize", "session_id", "stat", True),
        _spec("session_abort", "session_id", "none", True),
    )
}
"""Every operation of FS.md §7, by name."""


def op_path(export_name: str, op: str) -> str:
    """The RPC path serving ``op`` of ``export_name``."""
    if not export_name or "/" in export_name:
        raise InvalidArgumentError(f"export_name must be a non-empty name without '/', got {export_name!r}")
    if op not in OPS:
        raise InvalidArgumentError(f"unknown export operation {op!r}; known: {', '.join(OPS)}")
    return f"{PATH_PREFIX}{export_name}/{op}"


# -- arguments ----------------------------------------------------------------------------------

_BOOL_FIELDS = frozenset({"follow_symlinks", "create", "exclusive", "truncate"})
_INT_FIELDS = frozenset({"offset", "length", "mode"})


def path_to_wire(relpath: str) -> str | dict[str, str]:
    """A JSON-able form of ``relpath`` that survives non-UTF-8 file names."""
    if relpath.isascii():
        return relpath
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return {"fs_hex": relpath.encode("utf-8", "surrogateescape").hex()}
    return relpath


def path_from_wire(value: Any, field: str) -> str:
    """Inverse of :func:`path_to_wire`; anything else is an InvalidArgumentError naming ``field``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("fs_hex"), str):
        try:
            return bytes.fromhex(value["fs_hex"]).decode("utf-8", "surrogateescape")
        except ValueError:
            pass
    raise InvalidArgumentError(f"{field} must be an export-relative path string, got {value!r}")


def encode_request(spec: OpSpec, args: Mapping[str, Any]) -> RpcMessage:
    """The request message for ``spec`` called with ``args`` (keyed by ExportOps parameter name)."""
    meta: dict[str, Any] = {}
    frames: tuple[Buffer, ...] = ()
    for field in spec.fields:
        value = args[field]
        if field == "data":
            frames = (value,)
        elif field in _PATH_FIELDS:
            meta[field] = path_to_wire(value)
        elif field == "times_ns":
            meta[field] = None if value is None else [int(value[0]), int(value[1])]
        else:
            meta[field] = value
    return RpcMessage(meta, frames)


def decode_request(spec: OpSpec, message: RpcMessage) -> dict[str, Any]:
    """The keyword arguments for the ExportOps method, validated; bad input names the field."""
    meta = message.meta
    args: dict[str, Any] = {}
    for field in spec.fields:
        if field == "data":
            if len(message.frames) != 1:
                raise InvalidArgumentError(f"{spec.name}: expected 1 data frame, got {len(message.frames)}")
            args[field] = message.frames[0]
            continue
        if field not in meta:
            raise InvalidArgumentError(f"{spec.name}: missing argument {field!r}")
        value = meta[field]
        if field in _PATH_FIELDS:
            args[field] = path_from_wire(value, field)
        elif field in _BOOL_FIELDS:
            args[field] = _checked(spec, field, value, isinstance(value, bool), "a boolean")
        elif field in _INT_FIELDS:
            args[field] = _checked(spec, field, value, _is_int(value), "an integer")
        elif field == "session_id":
            args[field] = _checked(spec, field, value, isinstance(value, str) and value != "", "a session id")
        elif field == "times_ns":
            valid = value is None or (isinstance(value, list) and len(value) == 2 and all(map(_is_int, value)))
            _checked(spec, field, value, valid, "null or [atime_ns, mtime_ns]")
            args[field] = None if value is None else (value[0], value[1])
        else:  # a field added to OPS without a decoder is a programming error
            raise AssertionError(f"no decoder for field {field!r}")
    return args


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked(spec: OpSpec, field: str, value: Any, valid: bool, expected: str) -> Any:
    if not valid:
        raise InvalidArgumentError(f"{spec.name}: {field} must be {expected}, got {value!r}")
    return value


# -- replies ------------------------------------------------------------------------------------


def encode_reply(spec: OpSpec, result: Any) -> RpcMessage:
    """The reply message carrying ``result`` of ``spec``'s ExportOps method."""
    if spec.reply == "none":
        return RpcMessage({})
    if spec.reply == "stat":
        return RpcMessage({"stat": result.to_wire()})
    if spec.reply == "read":
        stat, data = result
        return RpcMessage({"stat": stat.to_wire()}, (data,))
    if spec.reply == "entries":
        return RpcMessage({"count": len(result)}, (pack_entries(result),))
    if spec.reply == "session":
        meta = {"session_id": result.session_id, "stat": result.stat.to_wire()}
        if result.same_host is not None:
            meta["same_host"] = result.same_host.to_wire()
        return RpcMessage(meta)
    raise AssertionError(f"unknown reply kind {spec.reply!r}")


def decode_reply(spec: OpSpec, message: RpcMessage, *, view: bool = False) -> Any:
    """The ExportOps result from a reply; a ``read`` answer's data is a memoryview when ``view``."""
    try:
        return _REPLY_DECODERS[spec.reply](message, view)
    except (KeyError, IndexError, TypeError, ValueError, struct.error) as exc:
        raise NetworkError(f"malformed {spec.name} reply: {exc!r}") from None


def _decode_read(message: RpcMessage, view: bool) -> tuple[FileStat, bytes | memoryview]:
    data = message.frames[0]
    if view:
        return FileStat.from_wire(message.meta["stat"]), memoryview(data)
    return FileStat.from_wire(message.meta["stat"]), data if isinstance(data, bytes) else bytes(data)


def _decode_entries(message: RpcMessage, view: bool) -> list[DirEntryInfo]:
    entries = unpack_entries(message.frames[0])
    if len(entries) != message.meta["count"]:
        raise ValueError(f"list_dir reply announced {message.meta['count']} entries, carried {len(entries)}")
    return entries


_REPLY_DECODERS: dict[str, Callable[[RpcMessage, bool], Any]] = {
    "none": lambda message, view: None,
    "stat": lambda message, view: FileStat.from_wire(message.meta["stat"]),
    "read": _decode_read,
    "entries": _decode_entries,
    "session": lambda message, view: WriteSessionInfo(
        str(message.meta["session_id"]),
        FileStat.from_wire(message.meta["stat"]),
        SameHostAddress.from_wire(message.meta.get("same_host")),
    ),
}


# -- directory listings -------------------------------------------------------------------------

# name length, then FileStat fields in to_wire order: mode size mtime atime ctime ino nlink uid gid
_ENTRY = struct.Struct("<HIqqqqQQII")


def pack_entries(entries: list[DirEntryInfo]) -> bytes:
    """Directory entries as one compact binary frame (names as file-system bytes)."""
    parts: list[bytes] = []
    append, pack = parts.append, _ENTRY.pack
    for entry in entries:
        name = entry.name.encode("utf-8", "surrogateescape")
        st = entry.stat  # fields read one by one: FileStat.to_wire would build a list per entry
        append(
            pack(len(name), st.mode, st.size, st.mtime_ns, st.atime_ns, st.ctime_ns, st.ino, st.nlink, st.uid, st.gid)
        )
        append(name)
    return b"".join(parts)


def unpack_entries(frame: Buffer) -> list[DirEntryInfo]:
    """Inverse of :func:`pack_entries`."""
    buf = memoryview(frame).cast("B")
    entries: list[DirEntryInfo] = []
    offset = 0
    header_size = _ENTRY.size
    while offset < len(buf):
        name_len, *stat_fields = _ENTRY.unpack_from(buf, offset)
        offset += header_size
        if offset + name_len > len(buf):
            raise ValueError("truncated directory entry")
        name = bytes(buf[offset : offset + name_len]).decode("utf-8", "surrogateescape")
        offset += name_len
        entries.append(DirEntryInfo(name, FileStat(*stat_fields)))
    return entries
