"""Overview: cluster members, exports, agents, mounts, cache usage and hit rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from fluxon_core.log_setup import get_logger
from fluxon_fs.fs_master.cache_usage import ExportCacheUsage
from fluxon_fs.fs_master.panel.payloads import agent_payload, export_cache_payload, mount_payload
from fluxon_fs.fs_master.panel.permissions import visible_exports
from fluxon_fs.fs_master.panel.web import RequestContext, View

log = get_logger("fluxon.fs.panel")

T = TypeVar("T")

MEMBER_COLUMNS_FIRST = ("instance_key", "role", "endpoint", "host", "state", "pool_used_bytes", "pool_capacity_bytes")


def _guarded(source: Callable[[], T], empty: T, what: str) -> tuple[T, str]:
    """A section's data, or ``empty`` and the error: one failing source must not hide the whole page."""
    try:
        return source(), ""
    except Exception as exc:  # any layer may fail (KV down); show it in its section
        log.warning("panel overview: %s unavailable: %s", what, exc)
        return empty, f"{what} unavailable: {exc}"


def member_columns(members: list[dict[str, Any]]) -> list[str]:
    """Columns of the members table: the well-known ones first, then any others in order of appearance."""
    seen = {key for member in members for key in member}
    columns = [key for key in MEMBER_COLUMNS_FIRST if key in seen]
    for member in members:
        columns += [key for key in member if key not in columns]
    return columns


def hit_rate(usage: dict[str, Any]) -> float | None:
    """``hit_rate`` as given, else hits / (hits + misses), else None."""
    given = usage.get("hit_rate")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(given)
    hits, misses = usage.get("hits"), usage.get("misses")
    if isinstance(hits, int) and isinstance(misses, int) and hits + misses > 0:
        return hits / (hits + misses)
    return None


def build_overview(ctx: RequestContext) -> dict[str, Any]:
    """Everything the overview shows; non-admins see only exports they reach and their own mounts."""
    backend, user, settings = ctx.backend, ctx.user, ctx.settings
    snapshot = backend.export_snapshot()
    all_exports: dict[str, Any] = snapshot.body["exports"]
    names = visible_exports(user, backend.authorizer, all_exports)
    no_export_cache: dict[str, ExportCacheUsage] = {}
    export_cache, export_cache_error = _guarded(backend.export_cache_usage, no_export_cache, "export cache usage")
    exports = [
        {
            "name": name,
            "remote_root_dir_abs": all_exports[name].get("remote_root_dir_abs", ""),
            "cache_max_bytes": all_exports[name].get("cache_max_bytes"),
            **export_cache_payload(export_cache.get(name)),
            "agents": [agent["instance_key"] for agent in all_exports[name].get("agents", [])],
            "browse_url": settings.absolute(f"/ui/exports/{quote(name, safe='')}/"),
        }
        for name in names
    ]
    now = time.monotonic()
    agents = []
    for agent in backend.agents():
        row = agent_payload(agent, now)
        row["exports"] = {k: v for k, v in row["exports"].items() if k in names}
        if user.can_manage_users or row["exports"]:
            agents.append(row)
    mounts = [mount_payload(m) for m in backend.mounts() if user.can_manage_users or m.username == user.username]
    no_members: list[dict[str, Any]] = []
    no_cache: dict[str, Any] = {}
    members, members_error = _guarded(backend.cluster_members, no_members, "cluster members")
    cache, cache_error = _guarded(backend.cache_usage, no_cache, "cache usage")
    return {
        "snapshot_version": snapshot.version,
        "cluster_members": members,
        "cluster_member_columns": member_columns(members),
        "cluster_members_error": members_error,
        "cache": cache,
        "cache_hit_rate": hit_rate(cache),
        "cache_error": cache_error,
        "exports": exports,
        "exports_cache_error": export_cache_error,
        "agents": agents,
        "mounts": mounts,
        "links": {
            "panel": settings.absolute("/ui/"),
            "api": settings.absolute("/api/overview"),
            "metrics": settings.absolute("/metrics"),
            "transfers": settings.absolute("/ui/transfers/"),
        },
        "auto_refresh_interval_secs": settings.auto_refresh_interval_secs,
    }


VIEWS = [View(build_overview, ui_path="/ui/", api_path="/api/overview", template="overview.html")]
ACTIONS: list = []
