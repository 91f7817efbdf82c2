"""``open()`` of a file on a mount: the same layering as a local file, over remote raw files.

``io.open`` builds ``FileIO`` → ``Buffered*`` → ``TextIOWrapper``; here the raw layer is
:class:`RemoteReadFile` (a version pinned at open, read in cached pieces) or
:class:`RemoteWriteFile` (a write session; ``"+"`` modes read back through the agent), and the
buffered and text layers are the standard ones, so text, newline, readline, iteration and seek
behave exactly like a local file. ``flush()`` reaches the agent (the standard buffered classes do
not call ``raw.flush()``, hence the thin subclasses). ``fileno()`` raises ``io.UnsupportedOperation``.
"""

from __future__ import annotations

import errno
import io
import operator
import threading
import time
import warnings
from typing import IO, TYPE_CHECKING, Any

import attrs

from fluxon_core.log_setup import get_logger
from fluxon_fs.export.ops import FileStat
from fluxon_fs.patcher.errors import not_supported, os_error, raise_with_user_path
from fluxon_fs.patcher.piece_reader import PinnedContent
from fluxon_fs.patcher.write_stream import WriteStream

if TYPE_CHECKING:
    from fluxon_fs.patcher.mount_table import MountedPath

log = get_logger("fluxon.fs.patcher.file")

REMOTE_BUFFER_SIZE = 128 * 1024
"""Buffer of the buffered layer (``buffering=-1``); remote raw calls cost more than local ones."""

_READALL_CHUNK = 8 * 1024 * 1024


@attrs.frozen
class OpenMode:
    """A parsed ``open()`` mode string."""

    reading: bool
    writing: bool
    appending: bool
    creating: bool
    updating: bool
    binary: bool

    @classmethod
    def parse(cls, mode: Any) -> OpenMode:
        """Validate like ``io.open`` (same exception types and messages)."""
        if not isinstance(mode, str):
            raise TypeError(f"invalid mode: {mode!r}")
        chars = set(mode)
        if chars - set("axrwb+t") or len(mode) > len(chars):
            raise ValueError(f"invalid mode: {mode!r}")
        parsed = cls(
            reading="r" in chars,
            writing="w" in chars,
            appending="a" in chars,
            creating="x" in chars,
            updating="+" in chars,
            binary="b" in chars,
        )
        if "t" in chars and parsed.binary:
            raise ValueError("can't have text and binary mode at once")
        if parsed.reading + parsed.writing + parsed.appending + parsed.creating != 1:
            raise ValueError("must have exactly one of create/read/write/append mode")
        return parsed

    @property
    def raw_mode(self) -> str:
        """What ``FileIO.mode`` says for this mode (``"rb+"`` for ``"w+"``)."""
        if self.creating:
            base = "xb"
        elif self.appending:
            base = "ab"
        elif self.writing:
            base = "wb"
        else:
            base = "rb"
        if self.updating:
            return "xb+" if self.creating else ("ab+" if self.appending else "rb+")
        return base


def open_remote(
    target: MountedPath,
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Any = None,
) -> IO[Any]:
    """``open()`` for a path in a mount, with the argument checks and layering of ``io.open``."""
    parsed = OpenMode.parse(mode)
    _check_open_arguments(parsed, buffering, encoding, errors, newline)
    if not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    if opener is not None:
        raise not_supported(target.user_path, "open() with an opener needs a file descriptor")
    name = target.user_path
    if parsed.reading and not parsed.updating:
        raw: RemoteReadFile | RemoteWriteFile = _open_for_reading(target, name)
    else:
        raw = _open_for_writing(target, name, parsed)
    try:
        return _layer(raw, parsed, mode, buffering, encoding, errors, newline)
    except BaseException:
        raw.close()
        raise


def _layer(
    raw: RemoteReadFile | RemoteWriteFile,
    parsed: OpenMode,
    mode: str,
    buffering: int,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
) -> IO[Any]:
    """The buffered and text layers ``io.open`` would put over ``raw``."""
    line_buffering = False
    if buffering == 1:
        buffering, line_buffering = -1, True
    if buffering < 0:
        buffering = REMOTE_BUFFER_SIZE
    if buffering == 0:
        if parsed.binary:
            return raw
        raise ValueError("can't have unbuffered text I/O")
    buffer: io.BufferedIOBase
    if parsed.updating:
        buffer = RemoteBufferedRandom(raw, buffering)
    elif parsed.reading:
        buffer = io.BufferedReader(raw, buffering)
    else:
        buffer = RemoteBufferedWriter(raw, buffering)
    if parsed.binary:
        return buffer
    text = RemoteTextIOWrapper(buffer, io.text_encoding(encoding), errors, newline, line_buffering)
    text.mode = mode  # type: ignore[misc]  # io.open sets it too
    return text


def _check_open_arguments(parsed: OpenMode, buffering: Any, encoding: Any, errors: Any, newline: Any) -> None:
    if not isinstance(buffering, int):
        raise TypeError(f"invalid buffering: {buffering!r}")
    if encoding is not None and not isinstance(encoding, str):
        raise TypeError(f"invalid encoding: {encoding!r}")
    if errors is not None and not isinstance(errors, str):
        raise TypeError(f"invalid errors: {errors!r}")
    if parsed.binary:
        for value, what in ((encoding, "an encoding"), (errors, "an errors"), (newline, "a newline")):
            if value is not None:
                raise ValueError(f"binary mode doesn't take {what} argument")
        if buffering == 1:
            warnings.warn(
                "line buffering (buffering=1) isn't supported in binary mode, the default buffer size will be used",
                RuntimeWarning,
                3,
            )


def _open_for_reading(target: MountedPath, name: Any) -> RemoteReadFile:
    started = time.monotonic()
    stat, first_piece = target.export.snapshot_for_read(target)
    return RemoteReadFile(target, name, PinnedContent(target, stat, first_piece), started)


def _open_for_writing(target: MountedPath, name: Any, parsed: OpenMode) -> RemoteWriteFile:
    export = target.export
    if target.must_be_dir:
        raise os_error(errno.EISDIR, target.user_path)
    try:
        session = export.ops.session_open(
            target.relpath,
            create=not parsed.reading,
            exclusive=parsed.creating,
            truncate=parsed.writing,
        )
    except Exception as exc:
        export.content_changed(target.relpath, None)
        raise_with_user_path(exc, target.user_path)
    export.content_changed(target.relpath, session.stat, (0, 0))  # no bytes changed (truncation leaves none)
    stream = WriteStream(
        export.ops,
        session.session_id,
        target.user_path,
        chunk_bytes=export.options.write_chunk_bytes,
        inflight_bytes=export.options.write_inflight_bytes,
        relpath=target.relpath,
        file_ino=session.stat.ino,
        shared_chunks=session.same_host is not None,
    )
    return RemoteWriteFile(target, name, parsed, stream, session.stat)


class _RemoteRaw(io.RawIOBase):
    """What both raw remote files share: name, mode, position, seek, and no file descriptor."""

    def __init__(self, target: MountedPath, name: Any, raw_mode: str) -> None:
        super().__init__()
        self.name = name
        self._raw_mode = raw_mode
        self._target = target
        self._pos = 0
        self._lock = threading.RLock()

    @property
    def mode(self) -> str:
        """``FileIO``-style mode (``"rb"``, ``"wb"``, ``"rb+"`` …)."""
        return self._raw_mode

    def __repr__(self) -> str:
        return f"<fluxon_fs remote file name={self.name!r} mode={self._raw_mode!r}>"

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _size(self) -> int:
        raise NotImplementedError

    def fileno(self) -> int:
        """Remote files have no file descriptor."""
        raise io.UnsupportedOperation("fileno: a file on a fluxon_fs mount has no file descriptor")

    def isatty(self) -> bool:
        """Never a terminal."""
        self._check_open()
        return False

    def seekable(self) -> bool:
        """Always seekable."""
        self._check_open()
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position like ``lseek``; a negative result is ``OSError(EINVAL)``."""
        offset = operator.index(offset)
        with self._lock:
            self._check_open()
            if whence == io.SEEK_SET:
                position = offset
            elif whence == io.SEEK_CUR:
                position = self._pos + offset
            elif whence == io.SEEK_END:
                position = self._size() + offset
            else:
                raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
            if position < 0:
                raise os_error(errno.EINVAL)
            self._pos = position
            return position

    def tell(self) -> int:
        """Current position."""
        self._check_open()
        return self._pos

    def begin_close(self) -> None:
        """The buffered layer is closing: its final flush needs no separate round trip."""


class RemoteReadFile(_RemoteRaw):
    """Raw read-only file: the version as of open."""

    def __init__(self, target: MountedPath, name: Any, content: PinnedContent, opened_at: float) -> None:
        super().__init__(target, name, "rb")
        self._content = content
        self._opened_at = opened_at
        self._bytes_read = 0

    def _size(self) -> int:
        return self._content.size

    def readable(self) -> bool:
        """Readable."""
        self._check_open()
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the current position."""
        with self._lock:
            self._check_open()
            count = self._content.readinto(self._pos, memoryview(buffer).cast("B"))
            self._pos += count
            self._bytes_read += count
            return count

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all remaining when negative)."""
        if size is None or size < 0:
            return self.readall()
        with self._lock:
            self._check_open()
            data = self._content.read(self._pos, size)
            self._pos += len(data)
            self._bytes_read += len(data)
            return data

    def readall(self) -> bytes:
        """Everything from the position to the end as of open."""
        with self._lock:
            self._check_open()
            data = self._content.read(self._pos, max(self._content.size - self._pos, 0))
            self._pos += len(data)
            self._bytes_read += len(data)
            return data

    def close(self) -> None:
        """Release buffered pieces."""
        if self.closed:
            return
        with self._lock:
            content = self._content
            content.close()
            if log.isEnabledFor(10):
                log.debug(
                    "op=read_remote path=%s export=%s size=%d bytes_read=%d cached_pieces=%d remote_pieces=%d ms=%.3f",
                    self._target.user_path,
                    self._target.export.export_name,
                    content.size,
                    self._bytes_read,
                    content.cached_pieces,
                    content.remote_pieces,
                    (time.monotonic() - self._opened_at) * 1000,
                )
        super().close()


class RemoteWriteFile(_RemoteRaw):
    """Raw writable file over a write session (``"+"`` modes read back through the agent)."""

    def __init__(self, target: MountedPath, name: Any, parsed: OpenMode, stream: WriteStream, opened: FileStat) -> None:
        super().__init__(target, name, parsed.raw_mode)
        self._stream = stream
        size = opened.size
        self._file_size = size
        self._seen_mtime_ns = opened.mtime_ns
        """The latest mtime the agent reported to this handle (at open, at flushes)."""
        self._appending = parsed.appending
        self._updating = parsed.updating
        self._pos = size if parsed.appending else 0
        self._unflushed = False
        self._changed: tuple[int, int] = (0, 0)  # bytes changed since the last flush (start, end)
        self._closing = False
        self._finished = False

    def _size(self) -> int:
        return self._file_size

    def readable(self) -> bool:
        """Readable in ``"+"`` modes."""
        self._check_open()
        return self._updating

    def writable(self) -> bool:
        """Writable."""
        self._check_open()
        return True

    def write(self, data: Any) -> int:
        """Queue ``data`` at the position (at the end in append modes)."""
        with self._lock:
            self._check_open()
            view = memoryview(data)
            if not view.nbytes:
                return 0  # as write(2): neither the position (not even when appending) nor the size moves
            if self._appending:
                self._pos = self._file_size
            self._stream.write(self._pos, view)
            start, end = min(self._pos, self._file_size), self._pos + view.nbytes  # a hole reads as zeros now
            if self._changed[0] < self._changed[1]:
                start, end = min(start, self._changed[0]), max(end, self._changed[1])
            self._changed = (start, end)
            self._pos += view.nbytes
            self._file_size = max(self._file_size, self._pos)
            self._unflushed = True
            return view.nbytes

    def readinto(self, buffer: Any) -> int:
        """Read through the agent, after making this handle's writes visible there."""
        if not self._updating:
            raise io.UnsupportedOperation("File not open for reading")
        with self._lock:
            self._check_open()
            self._flush_unlocked()
            view = memoryview(buffer).cast("B")
            if not view:
                return 0
            target = self._target
            try:
                _, data = target.export.ops.read_chunk(target.relpath, self._pos, len(view))
            except Exception as exc:
                raise_with_user_path(exc, target.user_path)
            view[: len(data)] = data
            self._pos += len(data)
            return len(data)

    def readall(self) -> bytes:
        """Everything from the position to the end, in large reads."""
        if not self._updating:
            raise io.UnsupportedOperation("File not open for reading")
        with self._lock:
            self._check_open()
            self._flush_unlocked()
            target = self._target
            parts = []
            while True:
                try:
                    _, data = target.export.ops.read_chunk(target.relpath, self._pos, _READALL_CHUNK)
                except Exception as exc:
                    raise_with_user_path(exc, target.user_path)
                if not data:
                    return b"".join(parts)
                parts.append(data)
                self._pos += len(data)

    def truncate(self, size: int | None = None) -> int:
        """Set the file size (default: the position); the position does not move."""
        with self._lock:
            self._check_open()
            length = self._pos if size is None else operator.index(size)
            if length < 0:
                raise os_error(errno.EINVAL)
            self._stream.sync()
            target = self._target
            try:
                stat = target.export.ops.truncate(target.relpath, length)
            except Exception as exc:
                target.export.content_changed(target.relpath, None)
                raise_with_user_path(exc, target.user_path)
            target.export.content_changed(target.relpath, stat)
            self._file_size = length
            return length

    def flush(self) -> None:
        """Make everything written so far visible at the agent."""
        if self._finished or self._closing:
            return  # close() finalizes the session, which flushes
        self._check_open()
        with self._lock:
            self._flush_unlocked()

    def _flush_unlocked(self) -> None:
        if not self._unflushed:
            return
        self._unflushed = False
        changed, self._changed = self._changed, (0, 0)
        try:
            stat = self._stream.flush()
        finally:
            self._target.export.content_changed(self._target.relpath, None)
        self._seen_mtime_ns = max(self._seen_mtime_ns, stat.mtime_ns)
        self._target.export.content_changed(self._target.relpath, stat, changed)

    def begin_close(self) -> None:
        """Skip the separate flush round trip of the closing buffered layer."""
        self._closing = True

    def close(self) -> None:
        """Finalize the session (raises if any write failed); the file is closed either way."""
        if self.closed:
            return
        with self._lock:
            if self._finished:
                return
            self._finished = True
            target = self._target
            stat = None
            try:
                stat = self._stream.finalize()
            finally:
                target.export.content_changed(target.relpath, stat, self._changed_pieces_to_drop(stat))
                super().close()
        if log.isEnabledFor(10):
            log.debug(
                "op=write_remote path=%s export=%s bytes=%d size=%d",
                target.user_path,
                target.export.export_name,
                self._stream.bytes_written,
                stat.size,
            )

    def _changed_pieces_to_drop(self, final: FileStat | None) -> tuple[int, int]:
        """The byte range whose cached pieces of the final version may be stale.

        Finalizing a session that wrote moves the mtime past every value the file had meanwhile
        (``write_sessions.stamp_fresh_version``), so no reader can have cached a piece of the final
        version before the data was complete: nothing to drop (for a large file that was one KV
        removal per piece on the closing thread). An mtime that did not move on from what this
        handle saw (a filesystem clock that stood still) keeps the old rule: drop what changed.
        """
        if final is not None and final.mtime_ns > self._seen_mtime_ns:
            return (0, 0)
        return self._changed


class _FlushesToAgent:
    """Mixin for the buffered layers: ``flush()`` reaches the agent; close folds the last flush into finalize."""

    raw: Any
    closed: bool

    def flush(self) -> None:
        """Write the buffer out and flush the session."""
        super().flush()  # type: ignore[misc]
        self.raw.flush()

    def close(self) -> None:
        """Close; the final flush travels with the session's finalize."""
        if not self.closed:
            self.raw.begin_close()
        super().close()  # type: ignore[misc]


class RemoteBufferedWriter(_FlushesToAgent, io.BufferedWriter):
    """``BufferedWriter`` whose ``flush()`` reaches the agent."""


class RemoteBufferedRandom(_FlushesToAgent, io.BufferedRandom):
    """``BufferedRandom`` whose ``flush()`` reaches the agent."""


class RemoteTextIOWrapper(io.TextIOWrapper):
    """``TextIOWrapper`` over a remote buffered file (one round trip fewer at close)."""

    def close(self) -> None:
        """Close; the final flush travels with the session's finalize."""
        buffer = self.buffer
        if not buffer.closed:
            raw = getattr(buffer, "raw", None)
            if isinstance(raw, _RemoteRaw):
                raw.begin_close()
        super().close()
