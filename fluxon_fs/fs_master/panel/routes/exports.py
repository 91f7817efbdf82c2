"""The export browser: exports the user reaches, directory listings by scope, streamed downloads."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from starlette.responses import Response, StreamingResponse

from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.fs_master.panel.payloads import entry_payload
from fluxon_fs.fs_master.panel.permissions import visible_exports
from fluxon_fs.fs_master.panel.web import RequestContext, View

DOWNLOAD_CHUNK_BYTES = 1024 * 1024


def breadcrumbs(path: str) -> list[dict[str, str]]:
    """``a/b`` → the root, ``a`` and ``a/b`` with their display names."""
    crumbs = [{"name": "/", "path": ""}]
    parts = path.split("/") if path else []
    for index, part in enumerate(parts):
        crumbs.append({"name": part, "path": "/".join(parts[: index + 1])})
    return crumbs


def build_export_list(ctx: RequestContext) -> dict[str, Any]:
    """Exports the user may browse."""
    exports = ctx.backend.export_snapshot().body["exports"]
    names = visible_exports(ctx.user, ctx.backend.authorizer, exports)
    return {
        "exports": [
            {
                "name": name,
                "remote_root_dir_abs": exports[name].get("remote_root_dir_abs", ""),
                "agent_count": len(exports[name].get("agents", [])),
                "browse_url": ctx.settings.absolute(f"/ui/exports/{quote(name, safe='')}/"),
            }
            for name in names
        ]
    }


def build_listing(ctx: RequestContext) -> dict[str, Any]:
    """One directory of an export, showing only what the user's scopes allow."""
    export = ctx.path_param("export")
    path = ctx.export_path("path", "")
    visibility = ctx.backend.authorizer.authorize_listing(ctx.user.access_token, export, path)
    listed = ctx.backend.export_ops(export, ctx.user.access_token).list_dir(path)
    entries = [entry_payload(entry, path) for entry in listed if visibility.shows(entry.name)]
    entries.sort(key=lambda e: (e["kind"] != "dir", e["name"]))
    limit = ctx.settings.max_listing_entries
    return {
        "export": export,
        "path": path,
        "parent": path.rsplit("/", 1)[0] if "/" in path else ("" if path else None),
        "crumbs": breadcrumbs(path),
        "entries": entries[:limit],
        "truncated": len(entries) > limit,
        "total_entries": len(entries),
        "link": ctx.settings.absolute(f"/ui/exports/{quote(export, safe='')}/?path={quote(path, safe='/')}"),
    }


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def build_download(ctx: RequestContext) -> Response:
    """A file's bytes, streamed in chunks after a read authorization of the exact path."""
    export = ctx.path_param("export")
    path = ctx.export_path("path")
    if not path:
        raise InvalidArgumentError("field 'path' must name a file")
    ctx.backend.authorizer.authorize(ctx.user.access_token, export, path, is_write=False)
    ops = ctx.backend.export_ops(export, ctx.user.access_token)
    stat = ops.stat(path)
    if stat.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    if not stat.is_file():
        raise InvalidArgumentError(f"{path!r} is not a regular file")
    # The first chunk is read here, in the handler, so a failure still becomes a proper status.
    first_stat, first = ops.read_chunk(path, 0, DOWNLOAD_CHUNK_BYTES)

    def chunks() -> Iterator[bytes]:
        offset = len(first)
        if first:
            yield first
        while offset < first_stat.size:
            now, data = ops.read_chunk(path, offset, DOWNLOAD_CHUNK_BYTES)
            if now.version != first_stat.version:
                # Headers are gone already: aborting is the only way to tell the client it is incomplete.
                raise OSError(errno.EAGAIN, "file changed during download", path)
            if not data:
                break
            offset += len(data)
            yield data

    name = path.rsplit("/", 1)[-1]
    headers = {
        "Content-Length": str(first_stat.size),
        "Content-Disposition": content_disposition(name),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


VIEWS = [
    View(build_export_list, ui_path="/ui/exports/", api_path="/api/exports", template="exports.html"),
    View(build_listing, ui_path="/ui/exports/{export}/", api_path="/api/exports/{export}/list", template="browse.html"),
    View(build_download, ui_path="/ui/exports/{export}/download", api_path="/api/exports/{export}/download"),
]
ACTIONS: list = []
