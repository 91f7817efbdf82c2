"""Transfer jobs surviving faults, with real processes: SIGKILL of a worker's agent mid-batch, SIGKILL of
the fs master mid-job, and the etcd state store going away and coming back.

"Mid-batch" is deterministic: the agent's test hook (FLUXON_TEST_PAUSE_AFTER_BYTES / _MARKER, see
fluxon_fs/fs_agent/transfer_worker.py) stops a worker after it wrote the first chunk of a large file
and creates a marker file; the test then kills the process, or deletes the marker to let it go on.
Every test ends with a byte-for-byte comparison of source and target trees.

Each test starts a kv plane, an fs master and one or two agents (~3 s) and runs a job; the slowest
(second agent taking over) waits for the dead agent's registry lease (6 s), so they take 6-15 s each.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from fluxon_core.errors import NetworkError
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.transfer.batching import group_batches
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.copier import COPY_CHUNK_BYTES, TEMP_MARKER, copy_batch, scan_export_dir
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.state_config import open_state_store
from tests.support.etcd_server import EtcdServer
from tests.support.fs_cluster import ADMIN, MASTER_KEY, FsCluster, PanelSession, fs_cluster, run_fluxon_transfer
from tests.support.fs_cluster import paused_batch as wait_for_pause
from tests.support.poll import wait_until
from tests.support.trees import assert_same_tree, make_tree

BIG_FILE_BYTES = 2 * COPY_CHUNK_BYTES + 12345  # the hook pauses after the first chunk: 8 MiB of 16+ written
JOB_TIMEOUT_S = 60


def make_source(src: Path) -> Path:
    """``src/data/set1``: small files in d0..d3 plus one big file in ``a_big`` (scanned last, so its batch
    comes after the small ones)."""
    root = src / "data" / "set1"
    make_tree(root, files=60, max_size=20_000)
    big = root / "a_big" / "big.bin"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(BIG_FILE_BYTES))
    os.utime(big, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    return root


def job_spec(**overrides: Any) -> JobSpec:
    values: dict[str, Any] = {
        "source_export": "src",
        "source_dir": "data/set1",
        "target_export": "dst",
        "target_prefix": "in",
        "batch_ready_bytes": 100_000,
        "desired_worker_count": 2,
    }
    values.update(overrides)
    return JobSpec(**values)


def start_agent(fs: FsCluster, key: str, exports: dict[str, str], pause_marker: Path | None = None) -> None:
    fs.start_agent(key, exports, pause_marker=pause_marker)


def start_with_a_pausing_agent(fs: FsCluster) -> tuple[Path, Path, Path, TransferClient]:
    """The fs master, the source tree and one agent serving ``src`` and ``dst`` whose pause hook stops
    the first batch writing a big file; returns (source tree, target export, pause marker, client)."""
    fs.start_master()
    src, dst = fs.export_dir("src"), fs.export_dir("dst")
    src_root = make_source(src)
    marker = fs.root / "paused"
    start_agent(fs, "agent-1", {"src": str(src), "dst": str(dst)}, pause_marker=marker)
    return src_root, dst, marker, client(fs)


def kill(fs: FsCluster, key: str) -> None:
    proc = fs.agents.pop(key) if key != MASTER_KEY else fs.master
    assert proc is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def client(fs: FsCluster) -> TransferClient:
    return TransferClient(fs.kv.external(f"cli-{uuid.uuid4().hex[:6]}", fs.host), MASTER_KEY, *ADMIN)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMP_MARKER in p.name]


def batch_copies(fs: FsCluster, job_id: str) -> dict[int, int]:
    """How many times each batch was copied to the end, from the agents' logs ("batch <job>/<n>: ...")."""
    pattern = re.compile(rf"batch {re.escape(job_id)}/(\d+): \d+ files")
    counts: dict[int, int] = {}
    for log in fs.root.glob("agent-*/log/*.log"):
        for match in pattern.finditer(log.read_text(errors="replace")):
            counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + 1
    return counts


def paused_batch(marker: Path) -> int:
    _job_id, number, written = wait_for_pause(marker)
    assert written < BIG_FILE_BYTES
    return number


def assert_paused_mid_file(dst: Path) -> None:
    """The big file is being written: only its temporary file exists, and it is partial."""
    target_dir = dst / "in" / "set1" / "a_big"
    assert not (target_dir / "big.bin").exists()
    partial = temp_files(target_dir)
    assert len(partial) == 1 and partial[0].name.startswith(".big.bin" + TEMP_MARKER)
    assert 0 < partial[0].stat().st_size < BIG_FILE_BYTES


def finish_and_compare(fs: FsCluster, tc: TransferClient, job_id: str, src_root: Path, dst: Path) -> dict:
    final = tc.wait(job_id, JOB_TIMEOUT_S)
    assert final["state"] == "succeeded", final
    assert final["counters"]["files_copied"] == final["counters"]["files_total"] == 61
    assert temp_files(dst) == []
    assert_same_tree(src_root, dst / "in" / "set1")
    return {b["number"]: b for b in tc.show(job_id)["batches"]}


@pytest.mark.parametrize("takeover", ["restarted_agent", "second_agent"])
def test_sigkill_of_a_worker_mid_batch_redoes_the_batch_without_partial_files(takeover: str) -> None:
    with fs_cluster() as fs:
        fs.start_master()
        src, dst = fs.export_dir("src"), fs.export_dir("dst")
        src_root = make_source(src)
        exports = {"src": str(src), "dst": str(dst)}
        marker = fs.root / "paused"
        start_agent(fs, "agent-1", exports, pause_marker=marker)
        tc = client(fs)
        job_id = tc.create_job(job_spec(desired_worker_count=1))
        number = paused_batch(marker)
        assert_paused_mid_file(dst)

        kill(fs, "agent-1")
        assert_paused_mid_file(dst)  # a kill publishes nothing
        lost = {b["number"] for b in tc.show(job_id)["batches"] if b["state"] == "claimed"}
        assert lost == {number}
        if takeover == "restarted_agent":
            # The new process claims under a new incarnation: the old claims are taken over at once.
            start_agent(fs, "agent-1", exports)
        else:
            # Another agent serving the same exports takes over once agent-1 missed its registry lease.
            start_agent(fs, "agent-2", exports)

        batches = finish_and_compare(fs, tc, job_id, src_root, dst)
        assert {n: b["claims"] for n, b in batches.items()} == {n: 2 if n in lost else 1 for n in batches}
        if takeover == "second_agent":
            assert batches[number]["worker"].startswith("agent-2/")
        copies = batch_copies(fs, job_id)
        assert copies == dict.fromkeys(batches, 1), "every batch is copied to the end exactly once"


def test_a_batch_that_kills_its_worker_every_time_fails_after_max_attempts() -> None:
    """A lost lease is an attempt: the batch whose worker dies each time is failed, not retried forever."""
    with fs_cluster() as fs:
        fs.start_master()
        src, dst = fs.export_dir("src"), fs.export_dir("dst")
        src_root = make_source(src)
        exports = {"src": str(src), "dst": str(dst)}
        tc = client(fs)
        job_id = tc.create_job(job_spec(desired_worker_count=1, max_attempts=2))
        numbers = set()
        for attempt in (1, 2):  # the big batch "kills" its worker twice
            marker = fs.root / f"paused-{attempt}"
            start_agent(fs, "agent-1", exports, pause_marker=marker)
            numbers.add(paused_batch(marker))
            kill(fs, "agent-1")
        (number,) = numbers
        start_agent(fs, "agent-1", exports)  # its claim finds the batch out of attempts

        final = tc.wait(job_id, JOB_TIMEOUT_S)
        assert final["state"] == "failed" and final["counters"]["batches_failed"] == 1, final
        assert final["state_reason"] == f"1 batch(es) failed: [{number}]"
        lost = {b["number"]: b for b in tc.show(job_id)["batches"]}[number]
        assert (lost["state"], lost["attempts"], lost["claims"]) == ("failed", 2, 2)
        assert (
            "was lost while copying" in lost["last_error"] and "2 of 2 attempts used, giving up" in lost["last_error"]
        )

        assert tc.action(job_id, "retry_failed")["state"] == "running"  # a healthy worker now copies it
        batches = finish_and_compare(fs, tc, job_id, src_root, dst)
        assert batches[number]["claims"] == 3


def test_sigkill_of_the_fs_master_mid_job_resumes_without_copying_done_batches_again() -> None:
    with fs_cluster() as fs:
        src_root, dst, marker, tc = start_with_a_pausing_agent(fs)
        # One worker at a time: when the big batch pauses, every batch before it is done, none after.
        job_id = tc.create_job(job_spec(desired_worker_count=1))
        number = paused_batch(marker)
        before = {b["number"]: b["state"] for b in tc.show(job_id)["batches"]}
        assert number > 0 and all(before[n] == "done" for n in range(number))
        assert before[number] == "claimed" and all(before[n] == "pending" for n in before if n > number)

        kill(fs, MASTER_KEY)
        fs.start_master()  # same workdir: the sqlite state store survives
        marker.unlink()  # the paused worker finishes its batch and reports to the new master

        tc = client(fs)
        batches = finish_and_compare(fs, tc, job_id, src_root, dst)
        assert all(b["claims"] == 1 for b in batches.values()), batches
        assert batch_copies(fs, job_id) == dict.fromkeys(batches, 1)


def test_state_store_outage_pauses_the_job_with_a_visible_error_and_it_resumes(etcd_server: EtcdServer) -> None:
    store = {
        "kind": "etcd",
        "etcd": {"endpoints": [etcd_server.endpoint], "key_prefix": f"/faults/{uuid.uuid4().hex}/", "timeout_s": 1},
    }
    with fs_cluster() as fs:
        fs.start_master(transfer_state_store=store)
        src, dst = fs.export_dir("src"), fs.export_dir("dst")
        src_root = make_source(src)
        marker = fs.root / "paused"
        start_agent(fs, "agent-1", {"src": str(src), "dst": str(dst)}, pause_marker=marker)
        tc = client(fs)
        job_id = tc.create_job(job_spec(desired_worker_count=1))
        number = paused_batch(marker)
        try:
            etcd_server.stop()
            listed = wait_until(lambda: tc.jobs()[0]["state_store_error"] and tc.jobs(), 20, "error in list")
            assert listed[0]["job_id"] == job_id and listed[0]["state"] == "running"
            error = listed[0]["state_store_error"]
            assert "transfer state store unavailable" in error and etcd_server.endpoint in error
            shown = tc.show(job_id)
            assert shown["job"]["state_store_error"] and shown["batches"] == []

            marker.unlink()  # the worker finishes copying while the store is down ...
            agent_log = fs.root / "agent-agent-1" / "log" / "fs_agent.log"
            wait_until(
                lambda: "reporting /fluxon_fs/transfer/complete to the fs master failed" in agent_log.read_text(),
                20,
                "the worker retrying its report",
            )
        finally:
            etcd_server.start()  # ... and its report lands once the store is back

        batches = finish_and_compare(fs, tc, job_id, src_root, dst)
        assert tc.show(job_id)["job"]["state_store_error"] == ""
        assert all(b["claims"] == 1 for b in batches.values()), batches
        assert batches[number]["state"] == "done"
        assert batch_copies(fs, job_id) == dict.fromkeys(batches, 1)


class JobWriteFailsOnce:
    """A state store whose next compare-and-set of a job record fails as if the store had just gone away."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        if self.armed and key.startswith("jobs/"):
            self.armed = False
            raise NetworkError("state store went away")
        return bool(self._inner.compare_and_set(key, expected, value))


@pytest.mark.parametrize("recovery", ["worker_retries_report", "master_restarts"])
def test_store_failing_between_batch_and_job_write_loses_no_count(tmp_path: Path, recovery: str) -> None:
    """Completing a batch writes the batch state, then the job; a failure in between is repaired by the
    worker's repeated report or by the next coordinator start, never counted twice or lost."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src / "data" / "set1", files=30)
    dst.mkdir()
    store = JobWriteFailsOnce(open_state_store({"kind": "sqlite", "sqlite": {"path": str(tmp_path / "s.db")}}))
    source, target = LocalExportOps(str(src)), LocalExportOps(str(dst))
    try:
        coordinator = TransferCoordinator(store, retry_backoff_s=0)
        spec = job_spec(batch_ready_bytes=50_000)
        job = coordinator.create_job(spec)
        for number, (entries, size) in enumerate(group_batches(scan_export_dir(source, spec.source_dir), 50_000)):
            coordinator.add_batch(job.job_id, number, entries, size)
        coordinator.finish_scan(job.job_id)
        while (assignment := coordinator.claim("w")) is not None:
            result = copy_batch(spec, assignment.entries, source, target)
            if assignment.number == 1:
                store.armed = True
                with pytest.raises(NetworkError):
                    coordinator.complete(job.job_id, 1, assignment.claim_token, result)
                if recovery == "worker_retries_report":
                    assert coordinator.complete(job.job_id, 1, assignment.claim_token, result)
                else:
                    coordinator = TransferCoordinator(store, retry_backoff_s=0)
                    coordinator.recover_after_restart()
                continue
            assert coordinator.complete(job.job_id, assignment.number, assignment.claim_token, result)
        final = coordinator.job(job.job_id)
        assert final.state == "verifying"
        c = final.counters
        assert (c.files_copied, c.batches_done) == (30, c.batches_total) and c.bytes_copied == c.bytes_total
        assert all(s.claims == 1 for s in coordinator.batch_states(job.job_id))
    finally:
        source.close()
        target.close()
        store.close()


def test_a_malformed_job_record_is_quarantined_and_stops_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corrupt job record in the store used to make every listing, every claim and the fs master's
    start raise; now it is moved aside, reported, and everything else goes on."""
    with fs_cluster() as fs:
        fs.start_master()
        src, dst = fs.export_dir("src"), fs.export_dir("dst")
        make_tree(src / "data" / "one", files=10)
        make_tree(src / "data" / "two", files=10, seed=3)
        fs.start_agent("agent-1", {"src": str(src), "dst": str(dst)})
        tc = client(fs)
        before = tc.wait(tc.create_job(job_spec(source_dir="data/one")), JOB_TIMEOUT_S)
        assert before["state"] == "succeeded"

        kill(fs, MASTER_KEY)
        state = open_state_store(
            {"kind": "sqlite", "sqlite": {"path": str(fs.root / "fs-master" / "transfer_state.db")}}
        )
        try:
            state.put("jobs/job-wrong-type", b'{"job_id": "job-wrong-type", "spec": {"source_export": 5}}')
            state.put("jobs/job-not-json", b"\xff\x00 not a record")
        finally:
            state.close()
        fs.start_master()  # recovery reads every job at start: it must not stop on them

        tc = client(fs)
        listing = tc.job_list()
        assert [job["job_id"] for job in listing["jobs"]] == [before["job_id"]]
        errors = {entry["key"]: entry["error"] for entry in listing["quarantined"]}
        assert set(errors) == {"jobs/job-wrong-type", "jobs/job-not-json"} and listing["quarantined_count"] == 2
        assert "field 'spec.source_export' must be str, got int 5" in errors["jobs/job-wrong-type"]
        assert "not a JSON record" in errors["jobs/job-not-json"]

        status, out, _ = run_fluxon_transfer(fs, capsys, monkeypatch, ADMIN, "list")
        assert status == 0 and before["job_id"] in out
        rows = [line for line in out.splitlines() if "quarantined" in line]
        assert len(rows) == 2 and any(r.startswith("job-wrong-type") and " ERROR " in r for r in rows), out

        panel = PanelSession(fs)
        panel.login(*ADMIN)
        shown = panel.http.get("/api/transfers/jobs").json()
        assert {q["key"] for q in shown["quarantined"]} == set(errors) and shown["quarantined_count"] == 2
        assert "job-wrong-type" in panel.http.get("/ui/transfers/").text

        after = tc.wait(tc.create_job(job_spec(source_dir="data/two", target_prefix="again")), JOB_TIMEOUT_S)
        assert after["state"] == "succeeded"  # transfers go on
        assert_same_tree(src / "data" / "two", dst / "again" / "two")
        state = open_state_store(
            {"kind": "sqlite", "sqlite": {"path": str(fs.root / "fs-master" / "transfer_state.db")}}
        )
        try:
            assert state.get("jobs/job-wrong-type") is None
            assert b"source_export" in (state.get("quarantine/jobs/job-wrong-type") or b"")
        finally:
            state.close()
        master_log = (fs.root / "fs-master" / "log" / "fs_master.log").read_text()
        assert "jobs/job-wrong-type cannot be read" in master_log


def test_checksum_verification_fails_a_job_whose_target_was_corrupted_after_the_copy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target file rewritten with other bytes of the same size and mtime between its copy and the
    verification: only the checksum comparison (``verify_checksum``, ``--verify-checksum``) sees it."""
    with fs_cluster() as fs:
        src_root, dst, marker, tc = start_with_a_pausing_agent(fs)
        job_id = tc.create_job(job_spec(desired_worker_count=1, verify_checksum=True))
        paused_batch(marker)  # every small-file batch is done, the big one is being copied
        victim = max((dst / "in" / "set1").rglob("f*.bin"), key=lambda p: p.stat().st_size)
        st = victim.stat()
        victim.write_bytes(bytes(b ^ 0x5A for b in victim.read_bytes()))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        marker.unlink()

        final = tc.wait(job_id, JOB_TIMEOUT_S)
        assert final["state"] == "failed" and final["state_reason"] == "verification found 1 difference(s)", final
        (line,) = final["verify_report"]
        assert line.startswith(f"{victim.relative_to(dst)}: content differs: target sha256 ")

        status, out, err = run_fluxon_transfer(
            fs, capsys, monkeypatch, ADMIN, "create", "--source", "src:data/set1", "--target", "dst:again",
            "--verify-checksum", "--wait", "--timeout", str(JOB_TIMEOUT_S),
        )  # fmt: skip
        assert status == 0, err
        assert "verify_checksum" in out and "state:      succeeded" in out
        assert_same_tree(src_root, dst / "again" / "set1")
