"""ListObjects over a directory tree: keys in S3 order, a page at a time, grouped by a delimiter.

Keys come out in UTF-8 (code point) order by walking each directory's entries sorted as
``name/`` for a directory and ``name`` for a file: every key under directory ``d`` starts with
``d/``, so expanding directories in that order is the global order. A page resumes after a
marker (``start-after`` or the continuation token) without visiting the directories that lie
wholly before it. With delimiter ``/`` a directory is one common prefix and is not walked; other
delimiters group the walked keys. Only regular files are objects; an empty directory is listed
as a folder marker (``d/``). Symlinks and the gateway's staging files are not listed.
"""

from __future__ import annotations

import errno
import stat as stat_module
from collections.abc import Callable, Iterator

import attrs

from fluxon_fs.export.ops import DirEntryInfo, FileStat
from fluxon_fs.s3_gateway.keys import STAGING_PREFIX

Entries = Callable[[str], list[DirEntryInfo]]
"""``entries(relpath)``: a directory's entries with their lstat (``OSError`` when it is not one)."""


@attrs.frozen
class ListedObject:
    """One key of a listing with the stat of its file (or of the empty directory a folder marker stands for)."""

    key: str
    stat: FileStat


@attrs.frozen
class ListingPage:
    """One page: objects and common prefixes in key order, and where the next page starts."""

    objects: tuple[ListedObject, ...]
    common_prefixes: tuple[str, ...]
    truncated: bool
    next_marker: str
    """The last key or prefix of this page ("" when not truncated)."""


def _listable(name: str) -> bool:
    if name.startswith(STAGING_PREFIX):
        return False
    try:
        name.encode("utf-8")  # a name that is not UTF-8 cannot be a key
    except UnicodeEncodeError:
        return False
    return True


def _sorted_entries(entries: Entries, relpath: str) -> list[tuple[str, DirEntryInfo]]:
    try:
        listed = entries(relpath)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise
    keyed = []
    for entry in listed:
        mode = entry.stat.mode
        if not _listable(entry.name):
            continue
        if stat_module.S_ISDIR(mode):
            keyed.append((entry.name + "/", entry))
        elif stat_module.S_ISREG(mode):
            keyed.append((entry.name, entry))
    keyed.sort(key=lambda item: item[0])
    return keyed


def _walk(
    entries: Entries, dir_relpath: str, key_base: str, name_prefix: str, marker: str, as_prefixes: bool
) -> Iterator[tuple[str, FileStat | None, bool]]:
    """(key or common prefix, stat, is_prefix) under ``dir_relpath`` after ``marker``, in key order."""
    for sort_name, entry in _sorted_entries(entries, dir_relpath):
        if not entry.name.startswith(name_prefix):
            continue
        key = key_base + sort_name
        if not stat_module.S_ISDIR(entry.stat.mode):
            if key > marker:
                yield key, entry.stat, False
            continue
        if as_prefixes:
            if key > marker and not marker.startswith(key):
                yield key, None, True
            continue
        if marker >= key and not marker.startswith(key):
            continue  # every key below lies before the marker
        child = f"{dir_relpath}/{entry.name}" if dir_relpath else entry.name
        empty = True
        for item in _walk(entries, child, key, "", marker, False):
            empty = False
            yield item
        if empty and key > marker and not _sorted_entries(entries, child):
            yield key, entry.stat, False


def list_page(entries: Entries, *, prefix: str, delimiter: str, marker: str, max_keys: int) -> ListingPage:
    """One page of the keys starting with ``prefix`` after ``marker``."""
    dir_key, _, name_prefix = prefix.rpartition("/")
    dir_relpath = dir_key
    key_base = dir_key + "/" if dir_key else ""
    objects: list[ListedObject] = []
    prefixes: list[str] = []
    last = ""
    for key, stat, is_prefix in _walk(entries, dir_relpath, key_base, name_prefix, marker, delimiter == "/"):
        if delimiter and not is_prefix and delimiter != "/":
            at = key.find(delimiter, len(prefix))
            if at >= 0:
                group = key[: at + len(delimiter)]
                if group == last or (marker.startswith(group)):
                    continue
                key, stat, is_prefix = group, None, True
        if len(objects) + len(prefixes) == max_keys:
            return ListingPage(tuple(objects), tuple(prefixes), True, last)
        if is_prefix:
            prefixes.append(key)
        else:
            assert stat is not None
            objects.append(ListedObject(key, stat))
        last = key
    return ListingPage(tuple(objects), tuple(prefixes), False, "")
