"""Copying one batch between two exports, and scanning / verifying through the export interface.

A file is written under a temporary name in its target directory and renamed into place after the
last byte and a size check, so a target file is always absent, the old version, or the complete
new one. Mode (permission bits only: setuid, setgid and sticky are never copied) and mtime are
preserved. A worker killed mid-file leaves its temporary file behind;
the next worker to claim that batch removes the temporary files of the batch's files first
(:func:`remove_orphan_temps`), so a finished job leaves none.
"""

from __future__ import annotations

import errno
import hashlib
import secrets
from collections.abc import Callable, Iterator

from fluxon_fs.export.ops import ExportOps, FileStat
from fluxon_fs.transfer.jobs import BatchResult, JobSpec
from fluxon_fs.transfer.records import ENTRY_DIR, ENTRY_FILE, ScanEntry

COPY_CHUNK_BYTES = 8 * 1024 * 1024
TEMP_MARKER = ".fluxon-part-"
COPIED_MODE_BITS = 0o777
"""The mode bits a copy keeps: permissions only, never setuid, setgid or sticky."""


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
    name = target_relpath.rsplit("/", 1)[-1]
    temp = f".{name}{TEMP_MARKER}{secrets.token_hex(4)}"
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


def copy_batch(
    spec: JobSpec,
    entries: list[ScanEntry],
    source: ExportOps,
    target: ExportOps,
    *,
    should_continue: Callable[[], bool] = lambda: True,
    on_progress: Callable[[int], None] | None = None,
    clean_orphans: bool = False,
) -> BatchResult:
    """Copy every entry of a batch; per-file problems become errors in the result (the batch is retried).

    ``clean_orphans`` (set when the batch was claimed before) first removes temporary files an
    earlier, killed copy left behind.
    """
    copied = copied_bytes = skipped = changed = 0
    errors: list[str] = []
    if clean_orphans:
        try:
            remove_orphan_temps(spec, entries, target)
        except OSError as exc:
            errors.append(f"removing temporary files of an earlier attempt: {exc.strerror or exc}")
    known_dirs: set[str] = set()
    dir_times: list[tuple[str, ScanEntry]] = []
    for entry in entries:
        if not should_continue():
            errors.append("batch interrupted: job is no longer running")
            break
        source_rel = spec.source_relpath(entry.relpath)
        target_rel = spec.target_relpath(entry.relpath)
        try:
            if entry.kind == ENTRY_DIR:
                ensure_dirs(target, target_rel, known_dirs)
                dir_times.append((target_rel, entry))
                continue
            if entry.kind != ENTRY_FILE:
                continue
            ensure_dirs(target, _parent(target_rel), known_dirs)
            try:
                if spec.conflict_policy == "skip_existing":
                    current = source.stat(source_rel, follow_symlinks=False)
                    if _same_file(target, target_rel, current):
                        skipped += 1
                        continue
                first_chunk = source.read_chunk(source_rel, 0, COPY_CHUNK_BYTES)
            except FileNotFoundError:
                skipped += 1  # vanished since the scan
                continue
            stat = copy_file(source, source_rel, target, target_rel, on_progress, first_chunk)
            copied += 1
            copied_bytes += stat.size
            changed += int(stat.size != entry.size or stat.mtime_ns != entry.mtime_ns)
        except OSError as exc:
            errors.append(f"{source_rel}: {exc.strerror or exc}")
    for target_rel, entry in dir_times:
        try:
            target.chmod(target_rel, entry.mode & COPIED_MODE_BITS)
        except OSError as exc:
            errors.append(f"{target_rel}: {exc.strerror or exc}")
    return BatchResult(
        files_copied=copied,
        bytes_copied=copied_bytes,
        files_skipped=skipped,
        files_changed=changed,
        errors=tuple(errors),
    )


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


def verify_batch(spec: JobSpec, entries: list[ScanEntry], source: ExportOps, target: ExportOps) -> list[str]:
    """Differences between source and target for a batch's files: size and mtime, and with
    ``spec.verify_checksum`` the sha256 of their content (each file read whole on both sides)."""
    differences = []
    for entry in entries:
        if entry.kind != ENTRY_FILE:
            continue
        source_rel = spec.source_relpath(entry.relpath)
        target_rel = spec.target_relpath(entry.relpath)
        try:
            src = source.stat(source_rel, follow_symlinks=False)
        except FileNotFoundError:
            continue
        try:
            dst = target.stat(target_rel, follow_symlinks=False)
        except FileNotFoundError:
            differences.append(f"{target_rel}: missing on target")
            continue
        if (src.size, src.mtime_ns) != (dst.size, dst.mtime_ns):
            differences.append(
                f"{target_rel}: target size/mtime {dst.size}/{dst.mtime_ns} != source {src.size}/{src.mtime_ns}"
            )
            continue
        if spec.verify_checksum:
            source_sum, target_sum = content_sha256(source, source_rel, src), content_sha256(target, target_rel, dst)
            if source_sum is None or target_sum is None:
                differences.append(f"{target_rel}: changed while its content was compared")
            elif source_sum != target_sum:
                differences.append(
                    f"{target_rel}: content differs: target sha256 {target_sum[:16]}… != source {source_sum[:16]}…"
                )
    return differences


__all__ = [
    "COPY_CHUNK_BYTES",
    "content_sha256",
    "copy_batch",
    "copy_file",
    "remove_orphan_temps",
    "scan_export_dir",
    "verify_batch",
]
