"""Transport-agnostic RPC pieces: errors on the wire and the process-wide transport.

Which transport a process uses is selected by the ``transport: {kind: ..., <kind>: {...}}`` block of
its config (:func:`transport_field`, :func:`select_transport`); ``zmq`` with its defaults otherwise.

A handler may raise anything; the caller must get a *typed* error back:

* an :class:`~fluxon_core.errors.ApiError` comes back as the class registered for its ``code``;
* an :class:`OSError` comes back as an :class:`OSError` with the same ``errno``, ``strerror`` and
  filenames (so ``FileNotFoundError`` stays ``FileNotFoundError``) — the FS relies on this;
* anything else becomes :class:`~fluxon_core.errors.RemoteHandlerError` naming the remote type.

:func:`encode_error` turns an exception into a small JSON-able dict and :func:`decode_error` turns
that dict back into an exception to raise. Every transport uses these two; none invents its own.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from fluxon_core.config import BackendConfig, config_field, load_backend_block
from fluxon_core.errors import ERROR_CLASSES_BY_CODE, ApiError, NetworkError, RemoteHandlerError
from fluxon_core.protocols import Transport

DEFAULT_TIMEOUT_S = 10.0
"""Deadline of a call when the caller does not pass one."""

DEFAULT_TRANSPORT_KIND = "zmq"

_OS_ERROR = "os_error"


def encode_error(exc: BaseException) -> dict[str, Any]:
    """A JSON-able description of ``exc`` that :func:`decode_error` turns back into a typed exception."""
    if isinstance(exc, ApiError):
        known = ERROR_CLASSES_BY_CODE.get(exc.code) is type(exc)
        encoded: dict[str, Any] = {
            "code": exc.code if known else RemoteHandlerError.code,
            "message": exc.message,
        }
        if isinstance(exc, RemoteHandlerError):
            encoded.update(remote_type=exc.remote_type, errno=exc.errno)
        elif not known:
            encoded.update(remote_type=type(exc).__name__, errno=None)
        return encoded
    if isinstance(exc, OSError):
        return {
            "code": _OS_ERROR,
            "errno": exc.errno,
            "strerror": exc.strerror,
            "filename": _filename(exc.filename),
            "filename2": _filename(exc.filename2),
            "message": str(exc),
            "remote_type": type(exc).__name__,
        }
    return {"code": RemoteHandlerError.code, "message": str(exc), "remote_type": type(exc).__name__, "errno": None}


def decode_error(encoded: Any) -> Exception:
    """The exception described by ``encoded`` (from :func:`encode_error`); malformed input is a NetworkError."""
    if not isinstance(encoded, dict) or not isinstance(encoded.get("code"), str):
        return NetworkError(f"malformed error in RPC reply: {encoded!r}")
    code = encoded["code"]
    message = str(encoded.get("message", ""))
    if code == _OS_ERROR:
        errno = encoded.get("errno")
        if not isinstance(errno, int):
            return OSError(message)
        # OSError(errno, ...) picks the matching subclass (FileNotFoundError for ENOENT, ...).
        return OSError(
            errno,
            encoded.get("strerror") or os.strerror(errno),
            encoded.get("filename"),
            None,
            encoded.get("filename2"),
        )
    cls = ERROR_CLASSES_BY_CODE.get(code)
    if cls is None:
        return RemoteHandlerError(message, remote_type=str(encoded.get("remote_type", code)))
    if cls is RemoteHandlerError:
        errno = encoded.get("errno")
        return RemoteHandlerError(
            message, remote_type=str(encoded.get("remote_type", "")), errno=errno if isinstance(errno, int) else None
        )
    return cls(message)


def _filename(value: Any) -> str | int | None:
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return str(value)


TRANSPORT_FIELD_DOC = (
    "RPC transport of this process, e.g. `{kind: zmq, zmq: {io_threads: 2}}`; default `zmq` with its "
    "default options. Every process of a cluster must use wire-compatible kinds."
)


def transport_field() -> Any:
    """The ``transport:`` field of a process's config (``BackendConfig | None``; None means ``zmq``)."""
    return config_field(doc=TRANSPORT_FIELD_DOC, default=None, backend="transport")


_default_lock = threading.Lock()
_default: tuple[int, Transport] | None = None
_default_selection: tuple[str, Any] | None = None
"""(kind, parsed options) of the process's transport; None until selected or first built (then ``zmq``)."""


def _normalized(kind: str, options: Any) -> tuple[str, Any]:
    from fluxon_core.plugins import get_backends

    return kind, get_backends().options("transport", kind, options)


def _current_selection() -> tuple[str, Any]:
    """The selection in force (caller holds ``_default_lock``); ``zmq`` with defaults until one is made."""
    global _default_selection
    if _default_selection is None:
        _default_selection = _normalized(DEFAULT_TRANSPORT_KIND, None)
    return _default_selection


def set_default_transport(kind: str, options: Any = None) -> None:
    """Select the backend :func:`default_transport` builds; raises UnknownBackendError for a kind nobody provides.

    ``options`` is an instance of the kind's options class, a mapping, or None for the defaults.
    Selecting what is already selected keeps the transport built for it. Otherwise the next
    :func:`default_transport` call builds the new selection; transports already handed out keep working.
    """
    global _default, _default_selection
    selection = _normalized(kind, options)
    with _default_lock:
        # Nothing is built before a selection is recorded, so a first selection costs nothing.
        if selection != _default_selection:
            _default_selection = selection
            _default = None


def select_transport(block: BackendConfig | None) -> Transport:
    """Make the transport ``block`` selects (None: ``zmq`` with its defaults) the process's transport; return it.

    A process has one transport, chosen by the ``transport:`` block of its config: the kv master
    role and :func:`~fluxon_core.kv.new_store` call this, so everything the process does over RPC
    afterwards (:func:`default_transport`, e.g. the FS roles and the patcher) uses the same one.
    """
    if block is None:
        # Resolved like a written block, so a missing default plugin is reported naming the field.
        block = load_backend_block("transport", {"kind": DEFAULT_TRANSPORT_KIND}, "transport")
    set_default_transport(block.kind, block.options)
    return default_transport()


def default_transport() -> Transport:
    """The process-wide transport, built once from the backend registry (kind ``zmq`` unless selected).

    A forked child builds its own: transports hold sockets that must not cross a fork.
    """
    global _default
    with _default_lock:
        if _default is None or _default[0] != os.getpid():
            from fluxon_core.plugins import get_backends

            kind, options = _current_selection()
            _default = (os.getpid(), get_backends().create("transport", kind, options))
        return _default[1]
