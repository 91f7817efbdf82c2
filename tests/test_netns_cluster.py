"""Three hosts with real network stacks (Linux network namespaces on a bridge), one Fluxon cluster.

Host a runs etcd, the kv master, an owner and the fs master; host b an owner and an fs agent
exporting ``bdata``; host c an owner, an fs agent exporting ``cdata`` and the client processes
(:mod:`tests.support.netns_cluster`). Every process runs inside its host's namespace, where
loopback is its own and the other hosts are 198.18.0.x addresses on the bridge.

The module shares one cluster; the tests that break something (kill an agent, cut a link, restart
the fs master) run last and each leaves the cluster whole again.
"""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.netns import netns_unavailable_reason
from tests.support.netns_cluster import (
    EXPORTS,
    MASTER_KEY,
    NetnsCluster,
    Worker,
    WorkerError,
    netns_cluster,
    wait_for,
)
from tests.support.netns_worker import content

MiB = 1024 * 1024
AGENT_LEASE_TTL_S = 6.0  # fluxon_fs.fs_master.master.AGENT_LEASE_TTL_S

pytestmark = [pytest.mark.netns, pytest.mark.etcd, pytest.mark.timeout(600)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def cluster() -> Iterator[NetnsCluster]:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with netns_cluster() as started:
        yield started


@pytest.fixture(scope="module")
def mount_c(cluster: NetnsCluster) -> Worker:
    """A process on host c with both exports mounted."""
    return cluster.worker("c", "mount-c", mount=True)


@pytest.fixture(scope="module")
def probe_b(cluster: NetnsCluster) -> Worker:
    """A process on host b that reads agent-b's metrics (its endpoint is on b's loopback)."""
    return cluster.worker("b", "probe-b", attach=False)


def mounted(cluster: NetnsCluster, worker: Worker, export: str, relpath: str) -> str:
    return str(cluster.mount_dir(worker.host.name, worker.name, export) / relpath)


def ops_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {op: count - before.get(op, 0) for op, count in after.items() if count != before.get(op, 0)}


# ---------------------------------------------------------------- the cluster works across hosts


def test_every_member_advertises_its_hosts_address(cluster: NetnsCluster) -> None:
    for label, ready in cluster.ready.items():
        host = cluster.configs[label][3]
        assert ready.endpoint.startswith(f"tcp://{host.address}:"), (label, ready.endpoint)


def test_c_reads_and_writes_bs_export_and_a_second_process_reads_from_cs_pool(
    cluster: NetnsCluster, mount_c: Worker, probe_b: Worker
) -> None:
    b_dir = cluster.export_dir("b")
    data = content(3 * MiB + 5, seed=1)
    (b_dir / "from-b.bin").write_bytes(data)
    got = mount_c.call("read_file", path=mounted(cluster, mount_c, "bdata", "from-b.bin"))
    assert (got["size"], got["sha256"]) == (len(data), sha256(data))

    wrote = mount_c.call("write_file", path=mounted(cluster, mount_c, "bdata", "from-c.bin"), size=2 * MiB + 3, seed=2)
    assert sha256((b_dir / "from-c.bin").read_bytes()) == wrote["sha256"] == sha256(content(2 * MiB + 3, seed=2))

    reader = cluster.worker("c", "reader-c", mount=True)
    before = cluster.agent_ops("b", via=probe_b)
    again = reader.call("read_file", path=mounted(cluster, reader, "bdata", "from-b.bin"))
    calls = ops_delta(before, cluster.agent_ops("b", via=probe_b))
    assert (again["size"], again["sha256"]) == (len(data), sha256(data))
    print(f"a second process on c read {len(data)} bytes; agent-b served it {calls}")
    # The content comes from c's pool; a process new to the file only asks b's agent for its metadata.
    assert calls.get("read_chunk", 0) == 0, calls
    assert set(calls) <= {"stat", "open"}, calls


def test_a_kv_value_put_on_b_is_read_on_c(cluster: NetnsCluster, mount_c: Worker) -> None:
    on_b = cluster.worker("b", "kv-b")
    put = on_b.call("kv_put", key="/netns/from-b", size=2 * MiB, seed=3)
    got = mount_c.call("kv_get", key="/netns/from-b")
    assert got == {"size": 2 * MiB, "sha256": put["sha256"]}
    put = mount_c.call("kv_put", key="/netns/from-c", size=100_000, seed=4)
    assert on_b.call("kv_get", key="/netns/from-c")["sha256"] == put["sha256"]


def test_a_transfer_from_an_export_on_b_to_one_on_c_is_byte_for_byte(cluster: NetnsCluster, mount_c: Worker) -> None:
    source = cluster.export_dir("b") / "tree"
    files = {"big.bin": 6 * MiB + 1, "sub/small.bin": 70_000, "sub/deeper/empty.txt": 0, "sub/deeper/x.bin": 1 * MiB}
    for index, (relpath, size) in enumerate(files.items()):
        (source / relpath).parent.mkdir(parents=True, exist_ok=True)
        (source / relpath).write_bytes(content(size, seed=100 + index))
    spec = {
        "source_export": "bdata",
        "source_dir": "tree",
        "target_export": "cdata",
        "target_prefix": "in",
        "batch_ready_bytes": 4 * MiB,
        "desired_worker_count": 2,
    }
    job = mount_c.call(
        "transfer", master=MASTER_KEY, identity=["admin", "admin-pw"], spec=spec, job_timeout_s=120, timeout_s=150
    )
    assert job["state"] == "succeeded", job
    target = cluster.export_dir("c") / "in" / "tree"
    for relpath in files:
        assert (target / relpath).read_bytes() == (source / relpath).read_bytes(), relpath
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == sorted(files)


# ---------------------------------------------------------------- misconfigured addresses fail loudly


def test_a_member_advertising_loopback_to_the_cluster_is_refused_naming_the_setting(cluster: NetnsCluster) -> None:
    owner = cluster.owner_config("c", "127.0.0.1")
    owner["instance_key"] = "owner-c2"
    owner["fluxonkv_spec"]["shared_file_path"] = str(cluster.dir("c2", "shared"))  # a second "host" dir on c
    owner["fluxonkv_spec"]["shared_memory_path"] = str(cluster.shm_root / "c2")
    proc = cluster.start_role("owner-c2", *cluster.configs["owner-c"][:2], owner, cluster.lab["c"])
    started = time.monotonic()
    with pytest.raises(Exception, match=r"'owner-c2'.*tcp://127\.0\.0\.1:\d+.*fluxonkv_spec\.rpc_host") as refused:
        proc.wait_ready(60)
    assert time.monotonic() - started < 20, "refused at registration, not after the attach timeout"
    assert "members on other hosts" in str(refused.value)

    agent = cluster.agent_config("c")
    agent["kvclient"]["instance_key"] = "agent-c-loopback"
    agent["fluxon_fs"]["agent"]["listen_address"] = "tcp://127.0.0.1:0"
    proc = cluster.start_role("agent-c-loopback", *cluster.configs["agent-c"][:2], agent, cluster.lab["c"])
    with pytest.raises(
        Exception, match=r"'agent-c-loopback'.*tcp://127\.0\.0\.1:\d+.*fluxon_fs\.agent\.listen_address"
    ):
        proc.wait_ready(60)


# ---------------------------------------------------------------- failures


def test_kill_9_of_bs_agent_during_a_large_read_on_c_never_gives_wrong_bytes(
    cluster: NetnsCluster, mount_c: Worker
) -> None:
    size = 48 * MiB
    data = content(size, seed=5)
    (cluster.export_dir("b") / "large.bin").write_bytes(data)
    path = mounted(cluster, mount_c, "bdata", "large.bin")
    reading = mount_c.submit("read_file", path=path, chunk=MiB, pause_s=0.02)
    wait_for(lambda: mount_c.call("progress") >= 4 * MiB, 60, 0.05, "the read to be under way")
    killed_at = time.monotonic()
    assert cluster.signal_role("agent-b", signal.SIGKILL) == -signal.SIGKILL
    cluster.restart_role("agent-b")
    restarted_s = time.monotonic() - killed_at
    try:
        result: dict[str, Any] | None = Worker.result(reading, timeout_s=180)
        outcome = f"read completed transparently in {result['seconds']:.1f}s"  # type: ignore[index]
    except WorkerError as exc:
        result = None
        outcome = f"read failed with {exc.type} errno={exc.errno}: {exc.message}"
    print(f"agent-b killed mid-read and back after {restarted_s:.1f}s; {outcome}")
    if result is not None:
        assert (result["size"], result["sha256"]) == (size, sha256(data)), "wrong bytes after an agent crash"
    else:
        assert reading.result()["error"]["type"] in ("OSError", "TimeoutError", "ConnectionError"), outcome
    # the mount keeps working with the restarted agent, without remounting
    recovered = wait_for(
        lambda: mount_c.call("read_file", path=path, timeout_s=60)["sha256"] == sha256(data), 60, 0.5, "a read"
    )
    print(f"the mount read the file again {recovered:.1f}s after the restart")


def test_cs_link_down_for_10s_recovers_without_restarts_and_loses_nothing_acknowledged(
    cluster: NetnsCluster, mount_c: Worker
) -> None:
    kv_b = cluster.worker("b", "kv-b-link")
    pids = {label: cluster.roles[label].pid for label in ("owner-c", "agent-c")}
    before = mount_c.call("write_file", path=mounted(cluster, mount_c, "bdata", "before-outage.bin"), size=MiB, seed=6)
    put_before = mount_c.call("kv_put", key="/netns/before-outage", size=300_000, seed=7)

    cluster.lab.set_link("c", up=False)
    down_at = time.monotonic()
    during_write = mount_c.submit("write_file", path=mounted(cluster, mount_c, "bdata", "during.bin"), size=MiB, seed=8)
    during_put = mount_c.submit("kv_put", key="/netns/during-outage", size=10_000, seed=9)
    time.sleep(max(0.0, 10.0 - (time.monotonic() - down_at)))
    cluster.lab.set_link("c", up=True)
    up_at = time.monotonic()

    fresh = content(MiB, seed=10)
    (cluster.export_dir("b") / "after-outage.bin").write_bytes(fresh)
    wait_for(
        lambda: (
            mount_c.call("read_file", path=mounted(cluster, mount_c, "bdata", "after-outage.bin"), timeout_s=30)[
                "sha256"
            ]
            == sha256(fresh)
        ),
        90,
        0.5,
        "the mount on c to read from b again",
    )
    mount_back = time.monotonic() - up_at
    outcomes: dict[str, str] = {}
    acknowledged: dict[str, Any] = {}
    for name, future in (("write", during_write), ("kv_put", during_put)):
        try:
            acknowledged[name] = Worker.result(future, timeout_s=120)
            outcomes[name] = "acknowledged"
        except WorkerError as exc:
            outcomes[name] = f"failed: {exc.type}: {exc.message[:160]}"

    kv_back = wait_for(
        lambda: kv_b.call("kv_get", key="/netns/before-outage", timeout_s=30)["sha256"] == put_before["sha256"],
        90,
        0.5,
        "b to read the value c put before the outage",
    )
    wait_for(lambda: "cdata" in mount_c.call("snapshot", master=MASTER_KEY), 60, 0.2, "agent-c to register again")
    export_back = time.monotonic() - up_at
    print(
        f"link of c down 10s; during it: {outcomes}; after it the mount read from b in {mount_back:.1f}s, "
        f"b read c's value {kv_back:.1f}s later, cdata was back in the snapshot {export_back:.1f}s after the link"
    )

    # nothing acknowledged is lost
    assert sha256((cluster.export_dir("b") / "before-outage.bin").read_bytes()) == before["sha256"]
    if "write" in acknowledged:
        assert sha256((cluster.export_dir("b") / "during.bin").read_bytes()) == acknowledged["write"]["sha256"]
    if "kv_put" in acknowledged:
        expected = acknowledged["kv_put"]["sha256"]
        wait_for(lambda: kv_b.call("kv_get", key="/netns/during-outage")["sha256"] == expected, 30, 0.5, "the value")
    # writes from c work again, and values move both ways
    wrote = mount_c.call("write_file", path=mounted(cluster, mount_c, "bdata", "after-c.bin"), size=MiB, seed=11)
    assert sha256((cluster.export_dir("b") / "after-c.bin").read_bytes()) == wrote["sha256"]
    put = kv_b.call("kv_put", key="/netns/after-outage", size=50_000, seed=12)
    assert mount_c.call("kv_get", key="/netns/after-outage")["sha256"] == put["sha256"]
    # ... without restarting anything on c
    assert {label: cluster.roles[label].pid for label in pids} == pids
    assert all(cluster.roles[label].poll() is None for label in pids)
    assert mount_c.proc.poll() is None


def test_a_restarted_fs_master_gets_exports_and_mounts_back_within_a_lease(
    cluster: NetnsCluster, mount_c: Worker
) -> None:
    mount_c.call("master_login", master=MASTER_KEY, identity=["admin", "admin-pw"])  # the endpoint is cached
    watcher = cluster.worker("a", "watch-a")  # has not called the fs master: resolves the new one at once
    assert cluster.signal_role("fs-master", signal.SIGTERM) == 0
    cluster.restart_role("fs-master")
    restarted = time.monotonic()

    login = mount_c.submit("master_login", master=MASTER_KEY, identity=["admin", "admin-pw"])
    wait_for(
        lambda: set(watcher.call("snapshot", master=MASTER_KEY)) >= set(EXPORTS.values()),
        60,
        0.1,
        "both agents to register with the new fs master",
    )
    registered = time.monotonic() - restarted
    first = Worker.result(login, timeout_s=60)
    print(f"first call after the restart took {first['seconds']:.2f}s; agents registered {registered:.1f}s after it")
    assert first["seconds"] < 5.0, "the first call waited out a timeout before re-resolving the fs master"
    assert registered <= AGENT_LEASE_TTL_S, f"agents re-registered {registered:.1f}s after the restart"

    data = content(MiB + 1, seed=13)
    (cluster.export_dir("b") / "after-master.bin").write_bytes(data)
    path = mounted(cluster, mount_c, "bdata", "after-master.bin")
    assert mount_c.call("read_file", path=path)["sha256"] == sha256(data)
    wrote = mount_c.call("write_file", path=mounted(cluster, mount_c, "cdata", "after-master.bin"), size=5000, seed=14)
    assert sha256((cluster.export_dir("c") / "after-master.bin").read_bytes()) == wrote["sha256"]
