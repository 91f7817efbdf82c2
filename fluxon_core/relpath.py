"""Export-relative paths: ``/``-separated, relative, ``""`` for the root, never climbing out.

The agent's fd-anchored resolver, scope decisions, pre-scans and job specs all split a path with
:func:`split_relpath`, so every layer agrees on which path a string names.
"""

from __future__ import annotations

import errno


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
