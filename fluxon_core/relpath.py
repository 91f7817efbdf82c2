"""Export-relative paths: ``/``-separated, relative, ``""`` for the root, never climbing out.

The agent's fd-anchored resolver, scope decisions, pre-scans and job specs all split a path with
:func:`split_relpath`, so every layer agrees on which path a string names.
"""

from __future__ import annotations

import errno

from fluxon_core.errors import InvalidArgumentError


def escape_error(relpath: str, why: str) -> PermissionError:
    """``PermissionError(EACCES)`` explaining why ``relpath`` would leave the export root."""
    return PermissionError(errno.EACCES, f"path escapes the export root ({why})", relpath)


def split_relpath(relpath: str) -> list[str]:
    """Validate an export-relative path and return its components ('' -> [])."""
    if not isinstance(relpath, str):
        raise TypeError(f"export path must be a str, got {type(relpath).__name__}")
    if "\0" in relpath:
        raise ValueError(f"embedded null byte in export path {relpath!r}")
    if relpath.startswith("/"):
        raise escape_error(relpath, "absolute path; export paths are relative to the export root")
    parts = [part for part in relpath.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise escape_error(relpath, "'..' component")
    return parts


def normalise_relpath(relpath: str, field: str) -> str:
    """``relpath`` in canonical form (``a//./b/`` → ``a/b``, ``""`` for the root), by the rules of
    :func:`split_relpath`; a path that could not stay inside its root raises
    :class:`InvalidArgumentError` naming ``field``."""
    try:
        return "/".join(split_relpath(relpath))
    except (PermissionError, ValueError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidArgumentError(
            f"{field} must be a path relative to its root directory, got {relpath!r}: {reason}"
        ) from None


def relative_to_root(path: str, root: str) -> str | None:
    """Absolute ``path`` relative to the directory ``root`` (``""`` when equal), or None when it lies
    outside; compared by whole components, so ``/data2`` is not inside ``/data``."""
    root = root.rstrip("/")
    path = path.rstrip("/")
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1 :].strip("/")
    return None
