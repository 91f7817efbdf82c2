"""Bytes written to one write session: coalesced into chunks and shipped with bounded bytes in flight.

Contiguous writes are gathered up to ``write_chunk_bytes`` and sent by the I/O pool while the caller
keeps writing; at most ``write_inflight_bytes`` travel at once. Payloads carry their offset, so
they may land in any order, except that a payload overlapping one still in flight waits for it
(a rewrite after ``seek`` must win). The first failure is sticky: every later call raises it.

A session the agent closed under the stream (it reaps sessions idle longer than its
``session_idle_timeout_s``, and a restarted agent has none) is re-opened transparently: every
payload the agent acknowledged is already in the file (sessions ``pwrite`` in place), so the stream
opens the same path again without creating or truncating it, checks that it is still the same file
(same inode), and resends the call that failed. When the file was removed or replaced meanwhile,
the call fails loudly (``EBADF`` naming the path) instead of writing into another file.

When the session's agent runs on this host (``shared_chunks``), runs of large writes fill
memfd-backed chunks instead of ``bytearray`` s, and the ops pass each full chunk to the agent as an
fd (:mod:`fluxon_fs.export.same_host`): one copy here, one in the agent's kernel, no socket.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

from fluxon_core.log_setup import get_logger
from fluxon_fs.export.ops import ExportOps, FileStat
from fluxon_fs.export.same_host.shared_chunk import SUPPORTED, SharedChunk
from fluxon_fs.patcher import chunk_buffers
from fluxon_fs.patcher.chunk_buffers import ChunkBuffer
from fluxon_fs.patcher.errors import raise_with_user_path
from fluxon_fs.patcher.io_pool import io_pool

T = TypeVar("T")
log = get_logger("fluxon.fs.patcher")

SHARED_CHUNK_MIN_WRITE = 64 * 1024
"""A run that starts with a write at least this large fills a shared chunk (smaller ones a bytearray)."""


class WriteStream:
    """The client side of one open write session (not thread-safe: the file object locks)."""

    def __init__(
        self,
        ops: ExportOps,
        session_id: str,
        user_path: str | bytes,
        *,
        chunk_bytes: int,
        inflight_bytes: int,
        relpath: str = "",
        file_ino: int = 0,
        shared_chunks: bool = False,
    ) -> None:
        self._ops = ops
        self._session_id = session_id
        self._session_lock = threading.Lock()
        self._reopen_failure: OSError | None = None
        self._relpath = relpath
        """Export-relative path of the file, to re-open a session the agent closed ("" never re-opens)."""
        self._file_ino = file_ino
        """Inode of the file at open: a re-opened session must write the same file."""
        self._user_path = user_path
        self._chunk_bytes = chunk_bytes
        self._shared_chunks = shared_chunks and SUPPORTED
        """Runs of large writes fill memfd-backed chunks (the session's agent takes them over its same-host channel)."""
        if self._shared_chunks:
            # The agent takes a chunk in milliseconds: the chunks kept across files (those in flight
            # plus the one being filled) are enough to stream, and then every chunk is a reused one
            # (a new memfd chunk costs about ten times the copy into a reused one: fresh shared
            # pages, faulted in and freed later).
            inflight_bytes = min(inflight_bytes, chunk_buffers.KEPT_BYTES - chunk_bytes)
        self._inflight_limit = max(inflight_bytes, chunk_bytes)
        self._run_start = 0
        self._run: ChunkBuffer = bytearray()
        self._run_len = 0
        """Bytes of ``_run`` in use (a recycled chunk buffer is longer than its content)."""
        self._spare: list[ChunkBuffer] = []
        """Chunk buffers whose payload the agent took, for the next runs (no fresh pages to fault in)."""
        self._inflight: list[_InFlight] = []
        self._inflight_bytes = 0
        self._error: BaseException | None = None
        self.bytes_written = 0

    def write(self, offset: int, data: Any) -> None:
        """Queue ``data`` (any bytes-like; copied unless immutable) for ``offset``."""
        self._raise_error()
        view = memoryview(data).cast("B")
        self.bytes_written += len(view)
        if (
            not self._run_len
            and len(view) >= self._chunk_bytes
            and isinstance(view.obj, bytes)
            and not self._shared_chunks  # copied once into a shared chunk beats two socket copies
        ):
            # Large immutable payload: ship slices of it without a copy.
            for start in range(0, len(view), self._chunk_bytes):
                self._submit(offset + start, view[start : start + self._chunk_bytes])
            return
        while view:
            if self._run_len and offset != self._run_start + self._run_len:
                self._ship_run(inline=False)
            taken = self._append(offset, view)
            offset += taken
            view = view[taken:]
            if self._run_len >= self._chunk_bytes:
                self._ship_run(inline=False)

    def _append(self, offset: int, view: memoryview) -> int:
        """Copy (a prefix of) ``view`` to the end of the run, which starts at ``offset`` when empty; returns its length."""
        if not self._run_len:
            self._run_start = offset
            while not self._spare and self._inflight and self._inflight[0].future.done():
                self._landed(self._inflight.pop(0))  # its buffer, if any, is free again
            if not self._spare:
                kept = chunk_buffers.take(self._chunk_bytes, shared=self._shared_chunks)  # one an earlier file used
                if kept is None and self._shared_chunks and len(view) >= SHARED_CHUNK_MIN_WRITE:
                    kept = SharedChunk(self._chunk_bytes)
                if kept is not None:
                    self._spare.append(kept)
            if not self._spare:
                self._run = bytearray(view)  # exactly sized: a small write allocates little
                self._run_len = len(view)
                return len(view)
            self._run = self._spare.pop()
        room = len(self._run) - self._run_len
        if room:  # a recycled chunk buffer: fill it in place
            taken = min(room, len(view))
            self._run[self._run_len : self._run_len + taken] = view[:taken]
        else:
            assert isinstance(self._run, bytearray)  # a fixed-size chunk is shipped once full
            taken = len(view)
            self._run += view
        self._run_len += taken
        return taken

    def sync(self) -> None:
        """Send everything queued and wait until the agent has it all."""
        self._raise_error()
        self._ship_run(inline=True)
        self._drain(lambda start, end: True)
        self._raise_error()

    def flush(self) -> FileStat:
        """:meth:`sync`, then make the data visible to other readers; returns the file's stat."""
        self.sync()
        return self._call(self._session_call, self._ops.session_flush)

    def finalize(self) -> FileStat:
        """Send everything and close the session; on an earlier failure abort it and raise that failure."""
        try:
            self.sync()
        except BaseException:
            self.abort()
            raise
        self._release_buffers()
        return self._call(self._session_call, self._ops.session_finalize)

    def abort(self) -> None:
        """Close the session after a failure; the file keeps what reached the agent."""
        self._run, self._run_len = bytearray(), 0
        try:
            self._drain(lambda start, end: True)
        except Exception:
            pass
        try:
            self._ops.session_abort(self._session_id)
        except Exception:
            pass  # the agent reaps sessions it cannot close now

    # -- shipping -------------------------------------------------------------------------------

    def _ship_run(self, *, inline: bool) -> None:
        run, start, length = self._run, self._run_start, self._run_len
        if not length:
            return
        self._run, self._run_len = bytearray(), 0
        # private to us from here on: no copy
        payload = run.payload(length) if isinstance(run, SharedChunk) else memoryview(run)[:length]
        # A buffer of exactly one chunk is used again once the agent has its payload.
        reusable = run if len(run) == self._chunk_bytes else None
        for offset in range(0, len(payload), self._chunk_bytes):
            piece = payload[offset : offset + self._chunk_bytes]
            last = offset + self._chunk_bytes >= len(payload)
            if inline and last:
                self._make_room(start + offset, len(piece))
                self._call(self._session_call, self._ops.session_write, start + offset, piece)
                self._reuse(reusable)
            else:
                self._submit(start + offset, piece, reusable if last else None)

    def _make_room(self, offset: int, length: int) -> None:
        """Wait for payloads overlapping ``[offset, offset + length)``, then until ``length`` more fit the window."""
        self._drain(_overlapping(offset, length))
        while self._inflight and self._inflight_bytes + length > self._inflight_limit:
            self._wait_oldest()

    def _submit(self, offset: int, payload: memoryview, buffer: ChunkBuffer | None = None) -> None:
        """Send ``payload`` in the background; ``buffer`` (holding it) is reused once the agent has it."""
        self._make_room(offset, len(payload))
        future = io_pool().submit(self._session_call, self._ops.session_write, offset, payload)
        future.add_done_callback(self._note_failure)
        self._inflight.append(_InFlight(offset, offset + len(payload), future, buffer))
        self._inflight_bytes += len(payload)

    def _release_buffers(self) -> None:
        """Hand the spare chunk buffers to the next file (everything sent has been answered)."""
        spare, self._spare = self._spare, []
        chunk_buffers.give(spare)

    def _reuse(self, buffer: ChunkBuffer | None) -> None:
        # Only after a reply: the transport has then sent every byte, so overwriting is safe (a
        # failed call may still sit in a send queue, so its buffer is dropped instead).
        if buffer is not None:
            self._spare.append(buffer)

    def _landed(self, sent: _InFlight) -> None:
        """Account for a payload that is done (waiting for it if need be)."""
        self._inflight_bytes -= sent.end - sent.start
        if sent.future.exception() is None:
            self._reuse(sent.buffer)

    def _session_call(self, method: Callable[..., T], *args: Any) -> T:
        """``method(session_id, *args)``, re-opening the session once when the agent closed it."""
        session_id = self._session_id
        try:
            return method(session_id, *args)
        except OSError as exc:
            if exc.errno != errno.EBADF or not self._relpath:
                raise
            self._reopen(session_id, exc)
            return method(self._session_id, *args)

    def _reopen(self, lost_id: str, cause: OSError) -> None:
        with self._session_lock:
            if self._session_id != lost_id:
                return  # another in-flight payload re-opened it already
            if self._reopen_failure is not None:
                raise self._reopen_failure  # another in-flight payload tried already
            try:
                info = self._ops.session_open(self._relpath, create=False, exclusive=False, truncate=False)
            except OSError as exc:
                self._reopen_failure = OSError(
                    errno.EBADF, f"write session lost and the file cannot be opened again ({exc.strerror})"
                )
                raise self._reopen_failure from cause
            if self._file_ino and info.stat.ino != self._file_ino:
                self._reopen_failure = OSError(
                    errno.EBADF, "write session lost and the file was replaced meanwhile; nothing more was written"
                )
                try:
                    self._ops.session_abort(info.session_id)
                finally:
                    raise self._reopen_failure from cause
            log.info("write session of %s was closed by the agent (%s); re-opened it", self._relpath, cause.strerror)
            self._session_id = info.session_id

    def _drain(self, selected: Callable[[int, int], bool]) -> None:
        """Wait for the in-flight payloads ``selected(start, end)`` picks."""
        keep = []
        for sent in self._inflight:
            if selected(sent.start, sent.end):
                self._landed(sent)
            else:
                keep.append(sent)
        self._inflight = keep

    def _wait_oldest(self) -> None:
        self._landed(self._inflight.pop(0))

    def _note_failure(self, future: Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None and self._error is None:
            self._error = future.exception()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise_with_user_path(self._error, self._user_path)

    def _call(self, method: Callable[..., T], *args: Any) -> T:
        try:
            return method(*args)
        except Exception as exc:
            if self._error is None:
                self._error = exc
            raise_with_user_path(exc, self._user_path)


class _InFlight(NamedTuple):
    """A payload sent in the background."""

    start: int
    end: int
    future: Future[None]
    buffer: ChunkBuffer | None


def _overlapping(offset: int, length: int) -> Callable[[int, int], bool]:
    end = offset + length
    return lambda start, stop: start < end and offset < stop
