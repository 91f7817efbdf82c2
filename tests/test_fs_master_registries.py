"""Export and mount registries of the fs master: leases, snapshot versions, conflicts."""

import pytest

from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.config import ExportCacheConfig, FsCacheConfig
from fluxon_fs.fs_master.export_registry import ExportRegistry
from fluxon_fs.fs_master.mount_registry import MountRegistry


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_registry(clock, **exports):
    cache = FsCacheConfig(exports={k: ExportCacheConfig(remote_root_dir_abs=v) for k, v in exports.items()})
    return ExportRegistry(cache, lease_ttl_s=5.0, clock=clock)


def test_agent_exports_join_and_leave_snapshot_with_lease():
    clock = FakeClock()
    registry = make_registry(clock, demo="/data/demo")
    v0 = registry.snapshot().version
    assert registry.snapshot().body["exports"]["demo"]["agents"] == []
    v1 = registry.register("agent-a", "tcp://127.0.0.1:1", {"demo": "/data/demo", "extra": "/data/extra"})
    assert v1 != v0
    body = registry.snapshot().body
    assert body["exports"]["demo"]["agents"] == [{"instance_key": "agent-a", "endpoint": "tcp://127.0.0.1:1"}]
    assert body["cache"]["exports"]["extra"]["remote_root_dir_abs"] == "/data/extra"
    clock.now += 4.0
    assert registry.heartbeat("agent-a")
    clock.now += 4.0
    assert "extra" in registry.snapshot().body["exports"]
    clock.now += 1.1
    snapshot = registry.snapshot()
    assert "extra" not in snapshot.body["exports"]
    assert snapshot.body["exports"]["demo"]["agents"] == []
    assert snapshot.version not in (v0, v1)
    assert not registry.heartbeat("agent-a")


def test_unchanged_registration_keeps_version():
    registry = make_registry(FakeClock())
    v1 = registry.register("agent-a", "ipc:///tmp/a", {"x": "/x"})
    assert registry.register("agent-a", "ipc:///tmp/a", {"x": "/x"}) == v1


def test_agent_root_conflicting_with_config_is_refused():
    registry = make_registry(FakeClock(), demo="/data/demo")
    with pytest.raises(InvalidArgumentError, match="REMOTE_ROOT_DIR"):
        registry.register("agent-a", "tcp://h:1", {"demo": "/elsewhere"})


def test_mount_registry_expires_unrefreshed_mounts():
    clock = FakeClock()
    mounts = MountRegistry(ttl_s=10, clock=clock)
    mounts.report("reader-1", "/mnt/a", "demo", username="admin")
    assert [m.export_name for m in mounts.mounts()] == ["demo"]
    clock.now += 11
    assert mounts.mounts() == []
