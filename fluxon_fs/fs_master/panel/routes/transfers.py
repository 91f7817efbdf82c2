"""``/ui/transfers/``: pre-scans and their import, transfer jobs and their actions, the two-pane submit."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any, cast
from urllib.parse import quote

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.relpath import relative_to_root
from fluxon_fs.fs_master import job_access
from fluxon_fs.fs_master.panel.payloads import batch_payload, job_payload, prescan_payload
from fluxon_fs.fs_master.panel.permissions import may_read, visible_exports
from fluxon_fs.fs_master.panel.web import Action, ActionOutcome, RequestContext, View
from fluxon_fs.transfer.jobs import JobRecord, JobSpec
from fluxon_fs.transfer.records import PrescanRecord
from fluxon_fs.transfer.states import JobState

DEFAULT_WORKERS = 2
DEFAULT_BATCH_READY_BYTES = cast(int, attrs.fields(JobSpec).batch_ready_bytes.default)
MAX_BATCHES_SHOWN = 1000
JOB_ACTIONS = ("pause", "resume", "cancel", "retry")
# Jobs whose batches may be claimed, so the jobs table counts their active workers.
JOBS_WITH_WORKERS = (JobState.RUNNING, JobState.PAUSED, JobState.VERIFYING)


def size_text(size: int) -> str:
    """A byte count as the shortest exact unit string the byte-size parser reads back (``256MiB``)."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _export_roots(ctx: RequestContext) -> dict[str, str]:
    exports = ctx.backend.export_snapshot().body["exports"]
    return {
        name: str(exports[name]["remote_root_dir_abs"])
        for name in visible_exports(ctx.user, ctx.backend.authorizer, exports)
    }


def prescan_sources(ctx: RequestContext, prescan: PrescanRecord, roots: dict[str, str]) -> list[dict[str, str]]:
    """Exports the pre-scan's source root lies in, with the folder inside each, that the user may read."""
    sources = []
    for name, root in sorted(roots.items()):
        source_dir = relative_to_root(prescan.src_root_dir, root)
        if source_dir is None:
            continue
        if ctx.user.can_manage_users or may_read(ctx.user, ctx.backend.authorizer, name, source_dir):
            sources.append({"export_name": name, "source_dir": source_dir})
    return sources


def _visible_prescans(ctx: RequestContext) -> list[dict[str, Any]]:
    roots = _export_roots(ctx)
    rows = []
    for prescan in ctx.backend.prescans():
        sources = prescan_sources(ctx, prescan, roots)
        if ctx.user.can_manage_users or sources:
            rows.append(
                {
                    **prescan_payload(prescan),
                    "sources": sources,
                    "import_url": f"/ui/transfers/prescans/{quote(prescan.job_id, safe='')}/import",
                }
            )
    return rows


def _job_row(ctx: RequestContext, job: JobRecord) -> dict[str, Any]:
    batches = ctx.backend.transfers.batch_states(job.job_id) if job.state in JOBS_WITH_WORKERS else None
    row = job_payload(job, batches)
    row["detail_url"] = f"/ui/transfers/jobs/{job.job_id}"
    return row


def _visible_jobs(ctx: RequestContext) -> list[dict[str, Any]]:
    jobs = job_access.visible_jobs(ctx.backend.authorizer, ctx.user.access_token, ctx.backend.transfers.jobs())
    return [_job_row(ctx, job) for job in jobs]


def _quarantined(ctx: RequestContext) -> dict[str, Any]:
    """Job records that could not be read: counted for everyone, listed for users who can manage users."""
    records = ctx.backend.transfers.quarantined_jobs()
    shown = records if ctx.user.can_manage_users else []
    return {
        "quarantined": [{"key": r.key, "error": r.error, "quarantined_at": r.quarantined_at} for r in shown],
        "quarantined_count": len(records),
    }


def build_transfers(ctx: RequestContext) -> dict[str, Any]:
    """The transfers page: pre-scans, jobs, and the exports the two panes can browse."""
    return {
        "prescans": _visible_prescans(ctx),
        "jobs": _visible_jobs(ctx),
        **_quarantined(ctx),
        "export_names": sorted(_export_roots(ctx)),
        "defaults": {
            "desired_worker_count": DEFAULT_WORKERS,
            "batch_ready_bytes": size_text(DEFAULT_BATCH_READY_BYTES),
        },
    }


def build_jobs(ctx: RequestContext) -> dict[str, Any]:
    """Transfer jobs the user may see, newest first, and the job records quarantined."""
    return {"jobs": _visible_jobs(ctx), **_quarantined(ctx)}


def build_prescans(ctx: RequestContext) -> dict[str, Any]:
    """Pre-scans the user may import, newest first."""
    return {"prescans": _visible_prescans(ctx)}


def build_job(ctx: RequestContext) -> dict[str, Any]:
    """One job with its batches (the first :data:`MAX_BATCHES_SHOWN`) and recent errors."""
    job = ctx.backend.transfers.job(ctx.path_param("job_id"))
    job_access.authorize_view(ctx.backend.authorizer, ctx.user.access_token, job)
    states = list(ctx.backend.transfers.batch_states(job.job_id))
    return {
        "job": job_payload(job, states),
        "batches": [batch_payload(b) for b in itertools.islice(states, MAX_BATCHES_SHOWN)],
        "batch_count": len(states),
        "batches_by_state": dict(sorted(Counter(b.state for b in states).items())),
        "link": ctx.settings.absolute(f"/ui/transfers/jobs/{job.job_id}"),
        "actions": list(JOB_ACTIONS),
    }


def _spec(ctx: RequestContext, *, source_dir: str, batch_ready_default: int) -> JobSpec:
    spec = JobSpec(
        source_export=ctx.text("source_export"),
        source_dir=source_dir,
        target_export=ctx.text("target_export"),
        target_prefix=ctx.export_path("target_prefix", ""),
        desired_worker_count=ctx.integer("desired_worker_count", DEFAULT_WORKERS),
        batch_ready_bytes=ctx.byte_size("batch_ready_bytes", batch_ready_default),
        conflict_policy=ctx.text("conflict_policy", "overwrite"),
        verify_checksum=ctx.flag("verify_checksum"),
    )
    spec.validate()
    return spec


def create_job(ctx: RequestContext) -> ActionOutcome:
    """A job that scans the source folder, then copies it under the target prefix."""
    spec = _spec(
        ctx,
        source_dir=ctx.export_path("source_dir", ""),
        batch_ready_default=DEFAULT_BATCH_READY_BYTES,
    )
    owner = job_access.authorize_new_job(ctx.backend.authorizer, ctx.user.access_token, spec)
    job = ctx.backend.start_transfer(spec, owner)
    return ActionOutcome(
        f"transfer job {job.job_id} created", {"job": job_payload(job)}, redirect=f"/ui/transfers/jobs/{job.job_id}"
    )


def job_action(ctx: RequestContext) -> ActionOutcome:
    """pause, resume, cancel, or retry the failed batches of a job."""
    action = ctx.path_param("action")
    if action not in JOB_ACTIONS:
        raise InvalidArgumentError(f"unknown job action {action!r}; expected one of {', '.join(JOB_ACTIONS)}")
    backend = ctx.backend
    updated = job_access.act_on_job(
        backend.transfers,
        backend.job_authority,
        backend.authorizer,
        ctx.user.access_token,
        ctx.path_param("job_id"),
        "retry_failed" if action == "retry" else action,
    )
    return ActionOutcome(f"job {updated.job_id}: {action} done, now {updated.state}", {"job": job_payload(updated)})


def build_import_form(ctx: RequestContext) -> dict[str, Any]:
    """The import form of one pre-scan: source exports that contain its root, target exports."""
    prescan = ctx.backend.prescan(ctx.path_param("prescan_id"))
    roots = _export_roots(ctx)
    sources = prescan_sources(ctx, prescan, roots)
    if not ctx.user.can_manage_users and not sources:
        raise InvalidArgumentError(f"pre-scan {prescan.job_id!r} is not inside an export you may read")
    return {
        "prescan": prescan_payload(prescan),
        "sources": sources,
        "export_names": sorted(roots),
        "defaults": {"desired_worker_count": DEFAULT_WORKERS},
    }


def import_prescan(ctx: RequestContext) -> ActionOutcome:
    """A running job from a finished pre-scan, rebased onto the chosen source export."""
    prescan = ctx.backend.prescan(ctx.path_param("prescan_id"))
    source_export = ctx.text("source_export")
    source_dir = relative_to_root(prescan.src_root_dir, ctx.backend.export_root_dir(source_export))
    if source_dir is None:
        raise InvalidArgumentError(
            f"pre-scan root {prescan.src_root_dir!r} is not inside export {source_export!r}; choose the export serving it"
        )
    spec = _spec(ctx, source_dir=source_dir, batch_ready_default=prescan.batch_ready_bytes or DEFAULT_BATCH_READY_BYTES)
    owner = job_access.authorize_new_job(ctx.backend.authorizer, ctx.user.access_token, spec)
    job = ctx.backend.import_prescan(prescan.job_id, spec, owner)
    return ActionOutcome(
        f"pre-scan {prescan.job_id} imported as job {job.job_id}",
        {"job": job_payload(job)},
        redirect=f"/ui/transfers/jobs/{job.job_id}",
    )


VIEWS = [
    View(build_transfers, ui_path="/ui/transfers/", api_path="/api/transfers", template="transfers.html"),
    View(build_jobs, api_path="/api/transfers/jobs"),
    View(build_prescans, api_path="/api/transfers/prescans"),
    View(
        build_job,
        ui_path="/ui/transfers/jobs/{job_id}",
        api_path="/api/transfers/jobs/{job_id}",
        template="transfer_job.html",
    ),
    View(build_import_form, ui_path="/ui/transfers/prescans/{prescan_id:path}/import", template="transfer_import.html"),
]
ACTIONS = [
    Action(create_job, ui_path="/ui/transfers/jobs", api_path="/api/transfers/jobs"),
    Action(
        job_action, ui_path="/ui/transfers/jobs/{job_id}/{action}", api_path="/api/transfers/jobs/{job_id}/{action}"
    ),
    Action(
        import_prescan,
        ui_path="/ui/transfers/prescans/{prescan_id:path}/import",
        api_path="/api/transfers/prescans/{prescan_id:path}/import",
    ),
]
