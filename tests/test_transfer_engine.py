"""Transfer jobs end to end in one process: scan, claim, copy, lease expiry, retries, import, verify.

The fault tests with real processes (SIGKILL of workers and of the fs master) live in
tests/test_transfer_faults.py; these pin down the coordinator's rules directly.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.transfer.batching import group_batches
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.copier import DirectoryListings, copy_batch, scan_export_dir, verify_batch
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.prescan import transfer_check_local_blocking
from fluxon_fs.transfer.state_config import open_state_store
from tests.support.trees import assert_same_tree, make_tree


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path):
    src_root, dst_root = tmp_path / "src_export", tmp_path / "dst_export"
    make_tree(src_root / "data" / "set1", files=40)
    dst_root.mkdir()
    source, target = LocalExportOps(str(src_root)), LocalExportOps(str(dst_root))
    store = open_state_store({"kind": "sqlite", "sqlite": {"path": str(tmp_path / "state.db"), "key_prefix": "/t/"}})
    clock = Clock()
    coordinator = TransferCoordinator(store, lease_ttl_s=30, retry_backoff_s=0, clock=clock)
    yield coordinator, source, target, src_root, dst_root, clock
    source.close()
    target.close()
    store.close()


def start_job(coordinator, source, spec):
    job = coordinator.create_job(spec)
    for number, (entries, size) in enumerate(
        group_batches(scan_export_dir(source, spec.source_dir), spec.batch_ready_bytes)
    ):
        coordinator.add_batch(job.job_id, number, entries, size)
    return coordinator.finish_scan(job.job_id)


def run_worker(coordinator, source, target, worker="w1", limit=1000):
    handled = 0
    while handled < limit:
        assignment = coordinator.claim(worker)
        if assignment is None:
            return handled
        result = copy_batch(assignment.spec, assignment.entries, source, target)
        coordinator.complete(assignment.job_id, assignment.number, assignment.claim_token, result)
        handled += 1
    return handled


def verify(coordinator, job_id, source, target):
    job = coordinator.job(job_id)
    differences = []
    for state in coordinator.batch_states(job_id):
        differences += verify_batch(job.spec, coordinator.batch_entries(job_id, state.number), source, target)
    return coordinator.finish_verification(job_id, differences)


def spec(**overrides):
    values = {
        "source_export": "src",
        "source_dir": "data/set1",
        "target_export": "dst",
        "target_prefix": "incoming",
        "batch_ready_bytes": 100_000,
        "desired_worker_count": 4,
    }
    values.update(overrides)
    return JobSpec(**values)


def test_job_copies_tree_exactly_once_under_target_prefix(world):
    coordinator, source, target, src_root, dst_root, _ = world
    job = start_job(coordinator, source, spec())
    assert job.state == "running" and job.counters.batches_total > 3
    run_worker(coordinator, source, target)
    assert coordinator.job(job.job_id).state == "verifying"
    assert verify(coordinator, job.job_id, source, target).state == "succeeded"
    # a/b copied into dst/ gives dst/b/... exactly once, never re-nested
    assert_same_tree(src_root / "data" / "set1", dst_root / "incoming" / "set1")
    assert sorted(os.listdir(dst_root / "incoming")) == ["set1"]
    final = coordinator.job(job.job_id)
    assert final.counters.files_copied == 40 and final.counters.batches_done == final.counters.batches_total
    assert all(s.claims == 1 for s in coordinator.batch_states(job.job_id))


def test_expired_lease_is_redispatched_and_stale_worker_result_ignored(world):
    coordinator, source, target, _src_root, _dst_root, clock = world
    job = start_job(coordinator, source, spec())
    lost = coordinator.claim("dead-worker")
    clock.now += 31
    run_worker(coordinator, source, target, worker="alive")
    assert (
        coordinator.complete(
            lost.job_id, lost.number, lost.claim_token, copy_batch(lost.spec, lost.entries, source, target)
        )
        is False
    )
    assert verify(coordinator, job.job_id, source, target).state == "succeeded"
    claims = {s.number: s.claims for s in coordinator.batch_states(job.job_id)}
    assert claims[lost.number] == 2 and all(c == 1 for n, c in claims.items() if n != lost.number)


def test_a_lost_lease_counts_as_an_attempt_and_the_batch_fails_after_max_attempts(world):
    coordinator, source, target, _src_root, _dst_root, clock = world
    job = start_job(coordinator, source, spec(max_attempts=3, desired_worker_count=1))
    first = coordinator.claim("crashing-1")
    for attempt in (1, 2):  # each holder dies: the lease runs out and the next claimer takes over
        clock.now += 31
        again = coordinator.claim(f"crashing-{attempt + 1}")
        assert again.number == first.number
        state = next(s for s in coordinator.batch_states(job.job_id) if s.number == first.number)
        assert (state.attempts, state.claims) == (attempt, attempt + 1)
        assert f"worker crashing-{attempt} was lost" in state.last_error
    clock.now += 31
    run_worker(coordinator, source, target, worker="healthy")  # copies the others; the lost one is out of attempts
    final = coordinator.job(job.job_id)
    lost = next(s for s in coordinator.batch_states(job.job_id) if s.number == first.number)
    assert lost.state == "failed" and lost.attempts == 3 and lost.claims == 3
    assert "3 of 3 attempts used, giving up" in lost.last_error
    assert final.state == "failed" and final.counters.batches_failed == 1
    assert f"[{first.number}]" in final.state_reason and "worker crashing-3 was lost" in final.recent_errors[-1]
    # The last holder's late report no longer counts; retry_failed gives the batch fresh attempts.
    late = copy_batch(first.spec, first.entries, source, target)
    assert coordinator.complete(job.job_id, first.number, first.claim_token, late) is False
    assert coordinator.retry_failed(job.job_id).state == "running"
    run_worker(coordinator, source, target, worker="healthy")
    assert verify(coordinator, job.job_id, source, target).state == "succeeded"


def test_desired_worker_count_limits_concurrent_claims(world):
    coordinator, source, _, _, _, _ = world
    start_job(coordinator, source, spec(desired_worker_count=2, batch_ready_bytes=10_000))
    assert coordinator.claim("a") is not None
    assert coordinator.claim("b") is not None
    assert coordinator.claim("c") is None


class FailingOps:
    """Source ops whose reads of one file fail with EIO."""

    def __init__(self, inner, bad_suffix):
        self._inner, self._bad = inner, bad_suffix

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def read_chunk(self, relpath, offset, length):
        if relpath.endswith(self._bad):
            raise OSError(errno.EIO, "Input/output error", relpath)
        return self._inner.read_chunk(relpath, offset, length)


def test_failing_batch_retries_then_fails_job_and_retry_failed_recovers(world):
    coordinator, source, target, src_root, dst_root, _ = world
    job = start_job(coordinator, source, spec(max_attempts=3))
    flaky = FailingOps(source, "f5.bin")
    run_worker(coordinator, flaky, target)
    failed = coordinator.job(job.job_id)
    assert failed.state == "failed" and failed.counters.batches_failed == 1
    assert "f5.bin" in failed.recent_errors[-1] and "attempt 3" in failed.recent_errors[-1]
    assert coordinator.retry_failed(job.job_id).state == "running"
    run_worker(coordinator, source, target)
    assert verify(coordinator, job.job_id, source, target).state == "succeeded"
    assert_same_tree(src_root / "data" / "set1", dst_root / "incoming" / "set1")


def test_pause_resume_cancel(world):
    coordinator, source, _target, _, _, _ = world
    job = start_job(coordinator, source, spec())
    coordinator.pause(job.job_id)
    assert coordinator.claim("w") is None
    coordinator.resume(job.job_id)
    assert coordinator.claim("w") is not None
    assert coordinator.cancel(job.job_id).state == "cancelled"
    assert coordinator.claim("w") is None
    with pytest.raises(InvalidArgumentError, match="cannot change it to running"):
        coordinator.resume(job.job_id)


def test_restart_recovery_extends_leases_so_finished_work_is_not_recopied(world):
    coordinator, source, target, _, _, clock = world
    job = start_job(coordinator, source, spec())
    held = coordinator.claim("w1")
    clock.now += 29
    restarted = TransferCoordinator(coordinator.store, lease_ttl_s=30, retry_backoff_s=0, clock=clock)
    restarted.recover_after_restart()
    clock.now += 5  # past the original lease, within the grace
    assert restarted.complete(
        held.job_id, held.number, held.claim_token, copy_batch(held.spec, held.entries, source, target)
    )
    run_worker(restarted, source, target, worker="w2")
    assert all(s.claims == 1 for s in restarted.batch_states(job.job_id))


def test_skip_existing_policy_keeps_identical_files(world):
    coordinator, source, target, _, _dst_root, _ = world
    first = start_job(coordinator, source, spec())
    run_worker(coordinator, source, target)
    second = start_job(coordinator, source, spec(conflict_policy="skip_existing"))
    run_worker(coordinator, source, target)
    counters = coordinator.job(second.job_id).counters
    assert counters.files_copied == 0 and counters.files_skipped == 40
    assert coordinator.job(first.job_id).counters.files_copied == 40


def test_import_prescan_rebases_like_a_direct_copy(world, tmp_path):
    coordinator, source, target, src_root, dst_root, _ = world
    summary = transfer_check_local_blocking(
        str(src_root / "data" / "set1"),
        {"kind": "sqlite", "sqlite": {"path": str(tmp_path / "state.db"), "key_prefix": "/t/"}},
        batch_ready_bytes=50_000,
    )
    job = coordinator.create_job_from_prescan(summary.job_id, spec(source_dir=""), export_root_dir=str(src_root))
    assert job.spec.source_dir == "data/set1" and job.counters.batches_total == summary.batch_count
    run_worker(coordinator, source, target)
    assert verify(coordinator, job.job_id, source, target).state == "succeeded"
    assert_same_tree(src_root / "data" / "set1", dst_root / "incoming" / "set1")


def test_import_refuses_prescan_outside_the_export(world, tmp_path):
    coordinator, _, _, _, _, _ = world
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    summary = transfer_check_local_blocking(
        str(outside),
        {"kind": "sqlite", "sqlite": {"path": str(tmp_path / "state.db"), "key_prefix": "/t/"}},
        batch_ready_bytes=10,
    )
    with pytest.raises(InvalidArgumentError, match="is not inside export"):
        coordinator.create_job_from_prescan(summary.job_id, spec(), export_root_dir=str(tmp_path / "src_export"))


def test_verification_reports_differences(world):
    coordinator, source, target, _, dst_root, _ = world
    job = start_job(coordinator, source, spec())
    run_worker(coordinator, source, target)
    victim = next(Path(dst_root / "incoming" / "set1").rglob("*.bin"))
    victim.write_bytes(b"tampered")
    result = verify(coordinator, job.job_id, source, target)
    assert result.state == "failed" and any(victim.name in line for line in result.verify_report)


def test_checksum_verification_finds_content_that_size_and_mtime_miss(world):
    """Same size, same mtime, other bytes: only ``verify_checksum`` sees it, and the job fails naming the file."""
    coordinator, source, target, src_root, dst_root, _ = world
    plain = start_job(coordinator, source, spec(target_prefix="plain"))
    checked = start_job(coordinator, source, spec(target_prefix="checked", verify_checksum=True))
    run_worker(coordinator, source, target)
    victims = []
    for prefix in ("plain", "checked"):
        victim = max((dst_root / prefix / "set1").rglob("*.bin"), key=lambda p: p.stat().st_size)
        st = victim.stat()
        victim.write_bytes(bytes(b ^ 0xFF for b in victim.read_bytes()))  # same size
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
        victims.append(victim)
    assert verify(coordinator, plain.job_id, source, target).state == "succeeded"  # size + mtime only
    failed = verify(coordinator, checked.job_id, source, target)
    assert failed.state == "failed" and failed.state_reason == "verification found 1 difference(s)"
    (line,) = failed.verify_report
    relpath = str(victims[1].relative_to(dst_root))
    assert line.startswith(f"{relpath}: content differs: target sha256 ")

    untouched = start_job(coordinator, source, spec(target_prefix="again", verify_checksum=True))
    run_worker(coordinator, source, target)
    assert verify(coordinator, untouched.job_id, source, target).state == "succeeded"
    assert_same_tree(src_root / "data" / "set1", dst_root / "again" / "set1")


def test_bad_job_spec_names_the_field(world):
    coordinator = world[0]
    with pytest.raises(InvalidArgumentError, match="desired_worker_count must be >= 1"):
        coordinator.create_job(spec(desired_worker_count=0))
    with pytest.raises(InvalidArgumentError, match="target_prefix must be a path relative"):
        coordinator.create_job(spec(target_prefix="../up"))


def test_a_jobs_own_scan_seals_small_file_batches_by_count_so_workers_share_them(tmp_path):
    from fluxon_fs.transfer.batching import JOB_SCAN_MAX_ENTRIES
    from fluxon_fs.transfer.records import ENTRY_FILE, MAX_ENTRIES_PER_BATCH, ScanEntry

    entries = [ScanEntry(f"d/f{i}", ENTRY_FILE, 100, 0, 0o644) for i in range(2 * JOB_SCAN_MAX_ENTRIES + 7)]
    job_batches = [len(batch) for batch, _ in group_batches(entries, 16 * 1024 * 1024, JOB_SCAN_MAX_ENTRIES)]
    assert job_batches == [JOB_SCAN_MAX_ENTRIES, JOB_SCAN_MAX_ENTRIES, 7]
    assert [len(batch) for batch, _ in group_batches(entries, 16 * 1024 * 1024)] == [len(entries)]
    assert JOB_SCAN_MAX_ENTRIES < MAX_ENTRIES_PER_BATCH


def test_a_waiting_claimer_is_woken_by_the_end_of_a_scan_and_by_a_resume(world):
    coordinator, source, _, _, _, _ = world
    job = coordinator.create_job(spec())
    seen = coordinator.work.generation
    assert not coordinator.work.wait(seen, 0.01)  # nothing happened: the wait runs out
    for number, (entries, size) in enumerate(
        group_batches(scan_export_dir(source, job.spec.source_dir), job.spec.batch_ready_bytes)
    ):
        coordinator.add_batch(job.job_id, number, entries, size)
    assert not coordinator.work.wait(seen, 0.01)  # the job is still scanning: nothing to claim yet
    coordinator.finish_scan(job.job_id)
    assert coordinator.work.wait(seen, 10) and coordinator.claim("w1") is not None
    coordinator.pause(job.job_id)
    seen = coordinator.work.generation
    coordinator.resume(job.job_id)
    assert coordinator.work.wait(seen, 10)


class CountingOps:
    """Export ops that record the directories listed."""

    def __init__(self, inner):
        self._inner, self.listed = inner, []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def list_dir(self, relpath):
        self.listed.append(relpath)
        return self._inner.list_dir(relpath)


def test_verification_lists_a_directory_once_for_all_the_batches_sharing_it(world):
    coordinator, source, target, src_root, dst_root, _ = world
    (src_root / "flat").mkdir()
    for i in range(64):
        (src_root / "flat" / f"f{i:02d}").write_bytes(os.urandom(1000))
    job = start_job(coordinator, source, spec(source_dir="flat", batch_ready_bytes=16 * 1000))
    assert job.counters.batches_total == 4
    run_worker(coordinator, source, target)
    (dst_root / "incoming" / "flat" / "f07").write_bytes(b"shorter")
    counted_source, counted_target = CountingOps(source), CountingOps(target)
    listings = (DirectoryListings(counted_source), DirectoryListings(counted_target))
    differences = [
        line
        for state in coordinator.batch_states(job.job_id)
        for line in verify_batch(
            job.spec, coordinator.batch_entries(job.job_id, state.number), counted_source, counted_target, listings
        )
    ]
    assert len(differences) == 1 and differences[0].startswith("incoming/flat/f07: target size/mtime 7/")
    assert counted_source.listed == ["flat"] and counted_target.listed == ["incoming/flat"]
