"""Scope decisions: export-relative paths, prefix matching on whole components, listing visibility.

Everything here is pure: a :class:`ScopeSet` is built from a user's grants and answers questions
without touching a store, so the same rules serve FS requests, the panel and tests.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from fluxon_core.access.records import ScopeGrant, ScopeMode
from fluxon_core.relpath import split_relpath

PathComponents = tuple[str, ...]


class PathAccess(enum.IntEnum):
    """What a user may do with one path, ordered from least to most."""

    NONE = 0
    """Nothing: the path is neither inside nor above any grant."""
    TRAVERSE = 1
    """The path is a directory above a grant: it may be looked up and listed, showing only the way to grants."""
    READ = 2
    """Inside a read_only grant."""
    READ_WRITE = 3
    """Inside a read_write grant (or the user can manage users)."""


def split_export_path(path: str) -> PathComponents:
    """Components of an export-relative path, by the agent's own rules (``""`` is the export root).

    This is :func:`fluxon_fs.export.serving.confinement.split_relpath`, so authorization sees exactly the
    path the agent will resolve: ``.`` and empty components are dropped; ``..`` or a leading ``/``
    raise ``PermissionError(EACCES)``; NUL raises ``ValueError``.
    """
    return tuple(split_relpath(path))


_LEVEL_BY_MODE = {ScopeMode.READ_ONLY: PathAccess.READ, ScopeMode.READ_WRITE: PathAccess.READ_WRITE}


@attrs.frozen
class ListingVisibility:
    """Which entries of a listed directory a user may see."""

    everything: bool
    """True inside a grant: all entries are visible."""
    names: frozenset[str] = frozenset()
    """Above grants: only these entries (the next component towards each grant) are visible."""

    def shows(self, name: str) -> bool:
        """True when the entry ``name`` of the listed directory is visible."""
        return self.everything or name in self.names


class ScopeSet:
    """One user's grants, indexed by export, answering access questions.

    ``unrestricted`` (users who can manage users) reaches every export, including exports that
    appear after the set was built, without any synthetic grant.
    """

    def __init__(self, grants: Iterable[ScopeGrant], *, unrestricted: bool = False) -> None:
        self.unrestricted = unrestricted
        self._by_export: dict[str, list[tuple[PathComponents, PathAccess]]] = {}
        for grant in grants:
            entry = (split_export_path(grant.prefix), _LEVEL_BY_MODE[grant.mode])
            self._by_export.setdefault(grant.export_name, []).append(entry)

    def access(self, export_name: str, path: str) -> PathAccess:
        """The strongest access any grant gives to ``path`` of ``export_name``."""
        if self.unrestricted:
            split_export_path(path)  # paths that could escape are refused for everyone
            return PathAccess.READ_WRITE
        components = split_export_path(path)
        best = PathAccess.NONE
        for prefix, level in self._by_export.get(export_name, ()):
            if components[: len(prefix)] == prefix:
                best = max(best, level)
            elif prefix[: len(components)] == components:
                best = max(best, PathAccess.TRAVERSE)
        return best

    def listing(self, export_name: str, dir_path: str) -> ListingVisibility | None:
        """What a listing of ``dir_path`` may show, or None when the directory is out of reach."""
        level = self.access(export_name, dir_path)
        if level >= PathAccess.READ:
            return ListingVisibility(everything=True)
        if level is PathAccess.NONE:
            return None
        components = split_export_path(dir_path)
        depth = len(components)
        names = frozenset(
            prefix[depth]
            for prefix, _ in self._by_export.get(export_name, ())
            if len(prefix) > depth and prefix[:depth] == components
        )
        return ListingVisibility(everything=False, names=names)

    def exports(self) -> frozenset[str]:
        """Exports with at least one grant (every export is reachable when ``unrestricted``)."""
        return frozenset(self._by_export)
