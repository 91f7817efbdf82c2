"""fluxon_core.rpc: errors survive the wire typed, and the process-wide transport comes from the registry."""

from __future__ import annotations

import errno
import json

import pytest

from fluxon_core import rpc
from fluxon_core.errors import (
    ERROR_CLASSES_BY_CODE,
    ApiError,
    KeyNotFoundError,
    NetworkError,
    PermissionDeniedError,
    RemoteHandlerError,
)
from fluxon_core.plugins import UnknownBackendError
from fluxon_core.protocols import Transport
from fluxon_plugins.zmq_transport.config import ZmqTransportConfig


def round_trip(exc: BaseException) -> Exception:
    """What a caller gets back for ``exc`` raised by a handler (through real JSON)."""
    return rpc.decode_error(json.loads(json.dumps(rpc.encode_error(exc))))


@pytest.mark.parametrize("cls", sorted(ERROR_CLASSES_BY_CODE.values(), key=lambda c: c.code), ids=lambda c: c.code)
def test_every_api_error_class_comes_back_as_itself(cls: type[ApiError]) -> None:
    back = round_trip(cls("boom at /x"))
    assert type(back) is cls
    assert back.message == "boom at /x"


def test_remote_handler_error_keeps_remote_type_and_errno() -> None:
    back = round_trip(RemoteHandlerError("inner failed", remote_type="ZeroDivisionError", errno=5))
    assert isinstance(back, RemoteHandlerError)
    assert (back.remote_type, back.errno, back.message) == ("ZeroDivisionError", 5, "inner failed")


def test_plain_exception_becomes_remote_handler_error_naming_its_type() -> None:
    back = round_trip(ValueError("bad value 7"))
    assert isinstance(back, RemoteHandlerError)
    assert back.remote_type == "ValueError"
    assert back.message == "bad value 7"
    assert back.errno is None


def test_unregistered_api_error_subclass_is_not_mistaken_for_its_base() -> None:
    class PluginSpecificError(KeyNotFoundError):
        pass

    back = round_trip(PluginSpecificError("plugin says no"))
    assert isinstance(back, RemoteHandlerError)
    assert back.remote_type == "PluginSpecificError"
    assert back.message == "plugin says no"


@pytest.mark.parametrize(
    ("exc", "expected_type"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/mnt/a.txt"), FileNotFoundError),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/mnt/d"), IsADirectoryError),
        (OSError(errno.ENOTEMPTY, "Directory not empty", "/mnt/d"), OSError),
        (PermissionError(errno.EACCES, "Permission denied", "/mnt/secret"), PermissionError),
        (FileExistsError(errno.EEXIST, "File exists", "/mnt/a", None, "/mnt/b"), FileExistsError),
    ],
)
def test_os_errors_keep_errno_strerror_and_filenames(exc: OSError, expected_type: type) -> None:
    back = round_trip(exc)
    assert type(back) is expected_type
    assert isinstance(back, OSError)
    assert (back.errno, back.strerror, back.filename, back.filename2) == (
        exc.errno,
        exc.strerror,
        exc.filename,
        exc.filename2,
    )
    assert str(back) == str(exc)


def test_os_error_with_bytes_filename_comes_back_with_a_str_filename() -> None:
    back = round_trip(FileNotFoundError(errno.ENOENT, "No such file or directory", b"/mnt/caf\xc3\xa9"))
    assert isinstance(back, FileNotFoundError)
    assert back.filename == "/mnt/café"


def test_os_error_without_errno_stays_an_os_error_with_its_message() -> None:
    back = round_trip(OSError("socket went away"))
    assert type(back) is OSError
    assert back.errno is None
    assert "socket went away" in str(back)


def test_permission_denied_error_is_the_api_class_and_still_a_permission_error() -> None:
    back = round_trip(PermissionDeniedError("no scope for /data"))
    assert type(back) is PermissionDeniedError
    assert isinstance(back, PermissionError)


@pytest.mark.parametrize("garbage", [None, "oops", {"message": "no code"}, {"code": 3}])
def test_malformed_error_payload_is_a_network_error(garbage: object) -> None:
    assert isinstance(rpc.decode_error(garbage), NetworkError)


def test_unknown_error_code_becomes_remote_handler_error() -> None:
    back = rpc.decode_error({"code": "from_the_future", "message": "new kind"})
    assert isinstance(back, RemoteHandlerError)
    assert back.message == "new kind"


def test_default_transport_is_the_zmq_backend_built_once() -> None:
    rpc.set_default_transport(rpc.DEFAULT_TRANSPORT_KIND)
    first = rpc.default_transport()
    assert isinstance(first, Transport)
    assert type(first).__module__.startswith("fluxon_plugins.zmq_transport")
    assert rpc.default_transport() is first


def test_selecting_an_unknown_transport_kind_names_the_available_ones() -> None:
    before = rpc.default_transport()
    with pytest.raises(UnknownBackendError, match=r"carrier-pigeon.*zmq"):
        rpc.set_default_transport("carrier-pigeon")
    assert rpc.default_transport() is before


def test_selecting_the_same_transport_again_keeps_the_built_one() -> None:
    rpc.set_default_transport(rpc.DEFAULT_TRANSPORT_KIND)
    first = rpc.default_transport()
    # None, a mapping and an options object that all mean "the defaults" are one selection.
    rpc.set_default_transport(rpc.DEFAULT_TRANSPORT_KIND, {})
    rpc.set_default_transport(rpc.DEFAULT_TRANSPORT_KIND, ZmqTransportConfig())
    assert rpc.default_transport() is first
    rpc.set_default_transport(rpc.DEFAULT_TRANSPORT_KIND, {"io_threads": 2})
    try:
        second = rpc.default_transport()
        assert second is not first and second.config.io_threads == 2  # type: ignore[attr-defined]
    finally:
        rpc.set_default_transport(rpc.DEFAULT_TRANSPORT_KIND)
