"""JSON-ready forms of the records the panel shows; pages and the JSON API use the same dicts."""

from __future__ import annotations

import stat as stat_module
import time
from collections.abc import Iterable
from typing import Any

from fluxon_core.access.records import ScopeAccessRecord, UserRecord
from fluxon_fs.export.ops import DirEntryInfo
from fluxon_fs.fs_master.cache_usage import ExportCacheUsage
from fluxon_fs.fs_master.export_registry import AgentRecord
from fluxon_fs.fs_master.mount_registry import MountRecord
from fluxon_fs.transfer.codec import to_json
from fluxon_fs.transfer.jobs import BatchRecord, JobRecord
from fluxon_fs.transfer.records import PrescanRecord
from fluxon_fs.transfer.states import BatchState


def user_payload(user: UserRecord) -> dict[str, Any]:
    """A user without anything secret."""
    return {
        "username": user.username,
        "can_manage_users": user.can_manage_users,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def scope_payload(scope: ScopeAccessRecord) -> dict[str, Any]:
    """A scope grant."""
    return {
        "export_name": scope.export_name,
        "prefix": scope.prefix,
        "mode": scope.mode.value,
        "usernames": list(scope.usernames),
        "created_at": scope.created_at,
        "updated_at": scope.updated_at,
    }


def agent_payload(agent: AgentRecord, now_monotonic: float) -> dict[str, Any]:
    """A live agent; the lease is shown as seconds left."""
    return {
        "instance_key": agent.agent_instance_key,
        "endpoint": agent.endpoint,
        "exports": dict(sorted(agent.exports.items())),
        "registered_at": agent.registered_at_wall,
        "lease_remaining_s": round(max(agent.lease_deadline - now_monotonic, 0.0), 1),
    }


def mount_payload(mount: MountRecord) -> dict[str, Any]:
    """A client mount."""
    return {
        "client_instance_key": mount.client_instance_key,
        "local_mount_dir_abs": mount.local_mount_dir_abs,
        "export_name": mount.export_name,
        "username": mount.username,
        "host": mount.host,
        "pid": mount.pid,
        "last_seen": mount.last_seen_wall,
    }


def export_cache_payload(usage: ExportCacheUsage | None) -> dict[str, Any]:
    """An export's content cache: bytes in all host pools, hits and misses, and each host pool's usage."""
    usage = usage or ExportCacheUsage()
    return {
        "cache_used_bytes": usage.used_bytes,
        "cache_hits": usage.hits,
        "cache_misses": usage.misses,
        "cache_hit_rate": usage.hit_rate,
        "cache_pools": [
            {
                "pool_owner": pool.pool_owner,
                "host": pool.host,
                "budget_bytes": pool.budget_bytes,
                "used_bytes": pool.used_bytes,
                "entries": pool.entries,
                "evictions": pool.evictions,
                "reported_at": pool.reported_at_wall,
            }
            for pool in usage.pools
        ],
    }


def entry_payload(entry: DirEntryInfo, dir_path: str) -> dict[str, Any]:
    """A directory entry with its export-relative path (None for a name that is not valid UTF-8,
    which can be shown, with replacement characters, but not addressed through the panel)."""
    st = entry.stat
    name = entry.name
    path: str | None = f"{dir_path}/{name}" if dir_path else name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        path = None
    if st.is_dir():
        kind = "dir"
    elif st.is_file():
        kind = "file"
    elif stat_module.S_ISLNK(st.mode):
        kind = "link"
    else:
        kind = "other"
    return {
        "name": name,
        "path": path,
        "kind": kind,
        "size": st.size,
        "mtime": st.mtime_ns / 1e9,
        "mode": stat_module.filemode(st.mode),
    }


def prescan_payload(record: PrescanRecord) -> dict[str, Any]:
    """A pre-scan summary (the record without its ``schema_version``)."""
    data = to_json(record)
    del data["schema_version"]
    return data


def _fraction(done: int, total: int) -> float | None:
    return min(done / total, 1.0) if total > 0 else None


def job_payload(job: JobRecord, batches: Iterable[BatchRecord] | None = None) -> dict[str, Any]:
    """A job with progress fractions, throughput and (when ``batches`` is given) active workers."""
    counters = job.counters
    files_done = counters.files_copied + counters.files_skipped + counters.files_failed
    now = time.time()
    active_workers = None
    if batches is not None:
        active_workers = sum(1 for b in batches if b.state is BatchState.CLAIMED and b.lease_deadline > now)
    return {
        "job_id": job.job_id,
        "state": job.state,
        "state_reason": job.state_reason,
        "owner": job.owner,
        "spec": to_json(job.spec),
        "counters": to_json(counters),
        "files_done": files_done,
        "bytes_fraction": _fraction(counters.bytes_copied, counters.bytes_total),
        "files_fraction": _fraction(files_done, counters.files_total),
        "throughput_bytes_per_s": job.throughput_bytes_per_s(now),
        "active_workers": active_workers,
        "desired_worker_count": job.spec.desired_worker_count,
        "error_count": len(job.recent_errors),
        "recent_errors": list(job.recent_errors),
        "verify_report": list(job.verify_report),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "is_active": not job.state.is_final,
    }


def batch_payload(batch: BatchRecord) -> dict[str, Any]:
    """A batch's state, without its claim token."""
    return {
        "number": batch.number,
        "state": batch.state,
        "files": batch.files,
        "bytes": batch.bytes,
        "attempts": batch.attempts,
        "worker": batch.worker,
        "lease_deadline": batch.lease_deadline,
        "last_error": batch.last_error,
    }
