"""Copying one batch between two exports, and scanning / verifying through the export interface.

A file is written under a temporary name in its target directory and renamed into place after the
last byte and a size check, so a target file is always absent, the old version, or the complete
new one. Mode (permission bits only: setuid, setgid and sticky are never copied) and mtime are
preserved. A worker killed mid-file leaves its temporary file behind;
the next worker to claim that batch removes the temporary files of the batch's files first
(:func:`remove_orphan_temps`), so a finished job leaves none.

When the worker's agent serves both exports, :func:`copy_batch` hands each directory's files to a
:class:`~fluxon_fs.export.serving.local_copy.LocalDirectoryCopier` (same result, directory-fd
relative, one access check per directory) and copies here only what it leaves.
"""

from __future__ import annotations

import errno
import hashlib
import threading
from collections.abc import Callable, Iterator

from fluxon_fs.export.ops import ExportOps, FileStat
from fluxon_fs.export.serving.local_copy import (
    COPIED_MODE_BITS,
    COPY_CHUNK_BYTES,
    TEMP_MARKER,
    FileOutcome,
    LocalDirectoryCopier,
    temp_name,
)
from fluxon_fs.transfer.jobs import BatchResult, JobSpec
from fluxon_fs.transfer.records import ENTRY_DIR, ENTRY_FILE, ScanEntry


def _parent(relpath: str) -> str:
    return relpath.rsplit("/", 1)[0] if "/" in relpath else ""


def ensure_dirs(ops: ExportOps, relpath: str, known: set[str]) -> None:
    """Create ``relpath`` and its parents on ``ops`` (like ``os.makedirs(exist_ok=True)``)."""
    if not relpath or relpath in known:
        return
    parts = relpath.split("/")
    for i in range(1, len(parts) + 1):
        current = "/".join(parts[:i])
        if current in known:
            continue
        try:
            ops.mkdir(current)
        except FileExistsError:
            pass
        known.add(current)


def _temp_name(target_relpath: str) -> str:
    parent = _parent(target_relpath)
    temp = temp_name(target_relpath.rsplit("/", 1)[-1])
    return f"{parent}/{temp}" if parent else temp


def copy_file(
    source: ExportOps,
    source_relpath: str,
    target: ExportOps,
    target_relpath: str,
    on_progress: Callable[[int], None] | None = None,
    first_chunk: tuple[FileStat, bytes] | None = None,
) -> FileStat:
    """Copy one file atomically; returns the source stat the copy corresponds to.

    ``first_chunk`` is the result of ``source.read_chunk(source_relpath, 0, COPY_CHUNK_BYTES)`` when
    the caller already read it. The temporary file is created with the source's permission bits
    (without set-id bits: a copy must not plant a setuid program), so a chmod is needed only when
    the target's umask changed them.
    """
    first_stat, data = first_chunk or source.read_chunk(source_relpath, 0, COPY_CHUNK_BYTES)
    wanted_mode = first_stat.mode & COPIED_MODE_BITS
    temp = _temp_name(target_relpath)
    session = target.session_open(temp, create=True, exclusive=True, truncate=True, mode=wanted_mode)
    committed = False
    try:
        offset = 0
        while data:
            target.session_write(session.session_id, offset, data)
            offset += len(data)
            if on_progress is not None:
                on_progress(len(data))
            if offset >= first_stat.size:
                break
            stat, data = source.read_chunk(source_relpath, offset, COPY_CHUNK_BYTES)
            if stat.version != first_stat.version:
                raise OSError(errno.EAGAIN, f"source changed while copying: {source_relpath}")
        written = target.session_finalize(session.session_id)
        committed = True
        if written.size != first_stat.size:
            raise OSError(
                errno.EIO, f"size mismatch after copy of {source_relpath}: {written.size} != {first_stat.size}"
            )
        if written.mode & 0o7777 != wanted_mode:
            target.chmod(temp, wanted_mode)
        target.utime(temp, (first_stat.atime_ns, first_stat.mtime_ns))
        target.rename(temp, target_relpath)
        return first_stat
    except BaseException:
        if not committed:
            try:
                target.session_abort(session.session_id)
            except OSError:
                pass
        try:
            target.unlink(temp)
        except OSError:
            pass
        raise


def remove_orphan_temps(spec: JobSpec, entries: list[ScanEntry], target: ExportOps) -> int:
    """Delete temporary files an earlier (killed) copy of this batch left next to its target files.

    Returns how many were removed. Only names ``.<file>.fluxon-part-*`` of this batch's own files are
    touched; a directory that does not exist yet holds none.
    """
    names_by_dir: dict[str, set[str]] = {}
    for entry in entries:
        if entry.kind == ENTRY_FILE:
            target_rel = spec.target_relpath(entry.relpath)
            names_by_dir.setdefault(_parent(target_rel), set()).add(target_rel.rsplit("/", 1)[-1])
    removed = 0
    for directory, names in names_by_dir.items():
        try:
            listing = target.list_dir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for item in listing:
            owner, marker, _ = item.name[1:].partition(TEMP_MARKER)
            if item.name.startswith(".") and marker and owner in names:
                try:
                    target.unlink(f"{directory}/{item.name}" if directory else item.name)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


class _Tally:
    """The counters and errors of one batch."""

    def __init__(self) -> None:
        self.copied = self.copied_bytes = self.skipped = self.changed = 0
        self.errors: list[str] = []

    def add(self, entry: ScanEntry, source_rel: str, outcome: FileOutcome) -> None:
        if outcome.error is not None:
            self.errors.append(f"{source_rel}: {outcome.error.strerror or outcome.error}")
        elif outcome.skipped:
            self.skipped += 1
        elif outcome.stat is not None:
            stat = outcome.stat
            self.copied += 1
            self.copied_bytes += stat.size
            self.changed += int(stat.size != entry.size or stat.mtime_ns != entry.mtime_ns)

    def result(self) -> BatchResult:
        return BatchResult(
            files_copied=self.copied,
            bytes_copied=self.copied_bytes,
            files_skipped=self.skipped,
            files_changed=self.changed,
            errors=tuple(self.errors),
        )


def copy_batch(
    spec: JobSpec,
    entries: list[ScanEntry],
    source: ExportOps,
    target: ExportOps,
    *,
    should_continue: Callable[[], bool] = lambda: True,
    on_progress: Callable[[int], None] | None = None,
    clean_orphans: bool = False,
    direct: LocalDirectoryCopier | None = None,
) -> BatchResult:
    """Copy every entry of a batch; per-file problems become errors in the result (the batch is retried).

    Directories are created first; then the files, directory by directory. With ``direct`` (source
    and target exports are both served by this agent) each directory's files are copied relative to
    two directory fds (:class:`~fluxon_fs.export.serving.local_copy.LocalDirectoryCopier`); the files
    it leaves, and every file without it, go through ``source`` and ``target`` one operation at a time.
    ``clean_orphans`` (set when the batch was claimed before) first removes temporary files an
    earlier, killed copy left behind.
    """
    tally = _Tally()
    if clean_orphans:
        try:
            remove_orphan_temps(spec, entries, target)
        except OSError as exc:
            tally.errors.append(f"removing temporary files of an earlier attempt: {exc.strerror or exc}")
    known_dirs: set[str] = set()
    dir_times: list[tuple[str, ScanEntry]] = []
    files_by_dir: dict[str, list[ScanEntry]] = {}
    for entry in entries:
        if entry.kind == ENTRY_DIR:
            target_rel = spec.target_relpath(entry.relpath)
            try:
                ensure_dirs(target, target_rel, known_dirs)
                dir_times.append((target_rel, entry))
            except OSError as exc:
                tally.errors.append(f"{spec.source_relpath(entry.relpath)}: {exc.strerror or exc}")
        elif entry.kind == ENTRY_FILE:
            files_by_dir.setdefault(_parent(entry.relpath), []).append(entry)
    interrupted = False
    for files in files_by_dir.values():
        if interrupted:
            break
        source_dir = _parent(spec.source_relpath(files[0].relpath))
        target_dir = _parent(spec.target_relpath(files[0].relpath))
        try:
            ensure_dirs(target, target_dir, known_dirs)
        except OSError as exc:
            for entry in files:
                tally.add(entry, spec.source_relpath(entry.relpath), FileOutcome(entry.relpath, error=exc))
            continue
        handled: dict[str, FileOutcome] = {}
        if direct is not None:
            names = [entry.relpath.rsplit("/", 1)[-1] for entry in files]
            outcomes = direct.copy_files(
                source_dir,
                target_dir,
                names,
                skip_existing=spec.conflict_policy == "skip_existing",
                should_continue=should_continue,
                on_progress=on_progress,
            )
            handled = {outcome.name: outcome for outcome in outcomes}
        for entry in files:
            source_rel = spec.source_relpath(entry.relpath)
            outcome = handled.get(entry.relpath.rsplit("/", 1)[-1])
            if outcome is None:
                if not should_continue():
                    tally.errors.append("batch interrupted: job is no longer running")
                    interrupted = True
                    break
                outcome = _copy_generic(spec, entry, source, target, on_progress)
            tally.add(entry, source_rel, outcome)
    for target_rel, entry in dir_times:
        try:
            target.chmod(target_rel, entry.mode & COPIED_MODE_BITS)
        except OSError as exc:
            tally.errors.append(f"{target_rel}: {exc.strerror or exc}")
    return tally.result()


def _copy_generic(
    spec: JobSpec, entry: ScanEntry, source: ExportOps, target: ExportOps, on_progress: Callable[[int], None] | None
) -> FileOutcome:
    """One file through the export operations (symlinks inside an export followed and re-authorised)."""
    source_rel = spec.source_relpath(entry.relpath)
    target_rel = spec.target_relpath(entry.relpath)
    try:
        try:
            if spec.conflict_policy == "skip_existing":
                current = source.stat(source_rel, follow_symlinks=False)
                if _same_file(target, target_rel, current):
                    return FileOutcome(entry.relpath, skipped=True)
            first_chunk = source.read_chunk(source_rel, 0, COPY_CHUNK_BYTES)
        except FileNotFoundError:
            return FileOutcome(entry.relpath, skipped=True)  # vanished since the scan
        stat = copy_file(source, source_rel, target, target_rel, on_progress, first_chunk)
    except OSError as exc:
        return FileOutcome(entry.relpath, error=exc)
    return FileOutcome(entry.relpath, stat=stat)


def _same_file(target: ExportOps, target_rel: str, source_stat: FileStat) -> bool:
    try:
        existing = target.stat(target_rel, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return existing.size == source_stat.size and existing.mtime_ns == source_stat.mtime_ns


def scan_export_dir(ops: ExportOps, source_dir: str) -> Iterator[ScanEntry]:
    """Walk a directory of an export through its ``list_dir`` (one call per directory, stat included)."""
    stack = [""]
    base = source_dir.strip("/")
    while stack:
        relpath = stack.pop()
        listing_path = "/".join(p for p in (base, relpath) if p)
        for item in ops.list_dir(listing_path):
            child = f"{relpath}/{item.name}" if relpath else item.name
            st = item.stat
            if st.is_dir():
                yield ScanEntry(child, ENTRY_DIR, 0, st.mtime_ns, st.mode & 0o7777)
                stack.append(child)
            elif st.is_file() and TEMP_MARKER not in item.name:
                yield ScanEntry(child, ENTRY_FILE, st.size, st.mtime_ns, st.mode & 0o7777)


def content_sha256(ops: ExportOps, relpath: str, stat: FileStat) -> str | None:
    """The sha256 (hex) of a file's content streamed through ``ops``; None when the file changed
    (its version differs from ``stat``'s) while it was read."""
    digest = hashlib.sha256()
    offset = 0
    while offset < stat.size:
        current, data = ops.read_chunk(relpath, offset, COPY_CHUNK_BYTES)
        if current.version != stat.version:
            return None
        if not data:
            break
        digest.update(data)
        offset += len(data)
    return digest.hexdigest()


LISTING_THRESHOLD = 16
"""A batch's files in one directory are compared from one listing of that directory on each side
(instead of one ``stat`` per file and side) when there are at least this many."""
LISTINGS_MAX_ENTRIES = 200_000
"""Entries a :class:`DirectoryListings` keeps (a few hundred bytes each); beyond, it starts afresh."""


class DirectoryListings:
    """Listings of one export's directories, taken once and shared by the verification of all the
    batches of a job (a directory's files are spread over many batches: 1 000 files of 1 MiB in
    one directory make 63 batches of 16 MiB, which listed that directory 126 times).

    Thread-safe; a directory is listed once even when several threads ask for it at the same time.
    At most :data:`LISTINGS_MAX_ENTRIES` entries are kept.
    """

    def __init__(self, ops: ExportOps, max_entries: int = LISTINGS_MAX_ENTRIES) -> None:
        self._ops = ops
        self._max_entries = max_entries
        self._listings: dict[str, dict[str, FileStat] | None] = {}
        self._kept = 0
        self._lock = threading.Lock()
        self._listing_locks: dict[str, threading.Lock] = {}

    def listing(self, directory: str) -> dict[str, FileStat] | None:
        """Name → lstat of ``directory``'s entries; None when it is missing or not a directory."""
        with self._lock:
            if directory in self._listings:
                return self._listings[directory]
            listing_lock = self._listing_locks.setdefault(directory, threading.Lock())
        with listing_lock:
            with self._lock:
                if directory in self._listings:
                    return self._listings[directory]
            try:
                listing: dict[str, FileStat] | None = {item.name: item.stat for item in self._ops.list_dir(directory)}
            except (FileNotFoundError, NotADirectoryError):
                listing = None
            with self._lock:
                size = len(listing or ())
                if self._kept + size > self._max_entries:
                    self._listings.clear()
                    self._kept = 0
                self._listings[directory] = listing
                self._kept += size
                self._listing_locks.pop(directory, None)
            return listing


def _lstats(
    ops: ExportOps, directory: str, relpaths: list[str], listings: DirectoryListings | None = None
) -> dict[str, FileStat]:
    """lstat of each path of ``relpaths`` (all in ``directory``) that exists, by path.

    Many paths: one ``list_dir`` (one call, none when ``listings`` has it); few: one ``stat`` each (a
    listing of a large directory costs more than a few stats).
    """
    found: dict[str, FileStat] = {}
    if len(relpaths) >= LISTING_THRESHOLD:
        listing = (listings or DirectoryListings(ops)).listing(directory)
        if listing is None:
            return found
        for relpath in relpaths:
            stat = listing.get(relpath.rsplit("/", 1)[-1])
            if stat is not None:
                found[relpath] = stat
        return found
    for relpath in relpaths:
        try:
            found[relpath] = ops.stat(relpath, follow_symlinks=False)
        except FileNotFoundError:
            pass
    return found


def verify_batch(
    spec: JobSpec,
    entries: list[ScanEntry],
    source: ExportOps,
    target: ExportOps,
    listings: tuple[DirectoryListings, DirectoryListings] | None = None,
) -> list[str]:
    """Differences between source and target for a batch's files: size and mtime, and with
    ``spec.verify_checksum`` the sha256 of their content (each file read whole on both sides).

    Sizes and mtimes come from one listing per directory and side when a directory holds many of
    the batch's files (:data:`LISTING_THRESHOLD`), else from one ``stat`` per file and side.
    ``listings`` (source side, target side) shares those listings between the batches of a job.
    """
    source_listings, target_listings = listings if listings is not None else (None, None)
    by_dir: dict[str, list[ScanEntry]] = {}
    for entry in entries:
        if entry.kind == ENTRY_FILE:
            by_dir.setdefault(_parent(entry.relpath), []).append(entry)
    differences = []
    for files in by_dir.values():
        source_rels = [spec.source_relpath(entry.relpath) for entry in files]
        target_rels = [spec.target_relpath(entry.relpath) for entry in files]
        source_stats = _lstats(source, _parent(source_rels[0]), source_rels, source_listings)
        target_stats = _lstats(target, _parent(target_rels[0]), target_rels, target_listings)
        for source_rel, target_rel in zip(source_rels, target_rels, strict=True):
            src = source_stats.get(source_rel)
            if src is None:
                continue  # vanished from the source since the scan
            dst = target_stats.get(target_rel)
            if dst is None:
                differences.append(f"{target_rel}: missing on target")
                continue
            if (src.size, src.mtime_ns) != (dst.size, dst.mtime_ns):
                differences.append(
                    f"{target_rel}: target size/mtime {dst.size}/{dst.mtime_ns} != source {src.size}/{src.mtime_ns}"
                )
                continue
            if spec.verify_checksum:
                source_sum = content_sha256(source, source_rel, src)
                target_sum = content_sha256(target, target_rel, dst)
                if source_sum is None or target_sum is None:
                    differences.append(f"{target_rel}: changed while its content was compared")
                elif source_sum != target_sum:
                    differences.append(
                        f"{target_rel}: content differs: target sha256 {target_sum[:16]}… != source {source_sum[:16]}…"
                    )
    return differences


__all__ = [
    "COPY_CHUNK_BYTES",
    "TEMP_MARKER",
    "DirectoryListings",
    "content_sha256",
    "copy_batch",
    "copy_file",
    "remove_orphan_temps",
    "scan_export_dir",
    "verify_batch",
]
