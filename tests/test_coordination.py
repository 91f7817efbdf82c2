"""Coordinator conformance: every ``coordinator`` kind behaves the same through the registry.

The shared suite runs against ``local`` (in-process) and ``etcd`` (a real etcd server, one per
session). etcd-only behaviour (several clients, namespaces, restarts, outages) follows at the end.
Lease TTLs are 1 s (the test etcd's minimum), so lease tests take one to three seconds each.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from fluxon_core.config import BackendConfig, ConfigError, config_field, load_config
from fluxon_core.errors import ApiError, InvalidArgumentError, KeyNotFoundError, StoreClosedError
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import Coordinator
from tests.support.poll import wait_until

LEASE_TTL_S = 1
# Upper bound for an expired lease's keys to vanish: TTL + etcd's 500 ms expiry sweep + slack for a
# loaded CI machine.
EXPIRY_DEADLINE_S = LEASE_TTL_S + 5

MakeCoordinator = Callable[..., Coordinator]


def _etcd_options(etcd_server: Any, key_prefix: str, **extra: Any) -> Any:
    entry = get_backends().entry("coordinator", "etcd")
    return load_config(entry.config_type, {"endpoints": [etcd_server.endpoint], "key_prefix": key_prefix, **extra})


@pytest.fixture(params=["local", pytest.param("etcd", marks=pytest.mark.etcd)])
def make_coordinator(request: pytest.FixtureRequest) -> Iterator[MakeCoordinator]:
    """Build coordinators of the parametrized kind; etcd ones share a per-test key namespace."""
    kind = request.param
    namespace = f"/fx-coord-{uuid.uuid4().hex[:10]}/"
    made: list[Coordinator] = []

    def make(**extra: Any) -> Coordinator:
        options = None
        if kind == "etcd":
            options = _etcd_options(request.getfixturevalue("etcd_server"), namespace, **extra)
        coordinator = get_backends().create("coordinator", kind, options)
        made.append(coordinator)
        return coordinator

    yield make
    for coordinator in made:
        coordinator.close()


@pytest.fixture
def coordinator(make_coordinator: MakeCoordinator) -> Coordinator:
    return make_coordinator()


class Recorder:
    """Collects watch events from the callback thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes | None]] = []
        self._lock = threading.Lock()

    def __call__(self, key: str, value: bytes | None) -> None:
        with self._lock:
            self.events.append((key, value))

    def snapshot(self) -> list[tuple[str, bytes | None]]:
        with self._lock:
            return list(self.events)

    def wait_for(self, event: tuple[str, bytes | None], timeout_s: float = 10.0) -> list[tuple[str, bytes | None]]:
        """Wait until ``event`` was seen; returns the events up to and including it."""

        def seen() -> list[tuple[str, bytes | None]] | None:
            events = self.snapshot()
            return events[: events.index(event) + 1] if event in events else None

        return wait_until(seen, timeout_s, f"watch event {event!r}")


# -- keys ---------------------------------------------------------------------------------------


def test_put_get_overwrite_delete(coordinator: Coordinator) -> None:
    assert coordinator.get("k") is None
    coordinator.put("k", b"v1")
    assert coordinator.get("k") == b"v1"
    coordinator.put("k", bytearray(b"v2"))
    assert coordinator.get("k") == b"v2"
    coordinator.put("empty", b"")
    assert coordinator.get("empty") == b""
    assert coordinator.delete("k") is True
    assert coordinator.get("k") is None
    assert coordinator.delete("k") is False


def test_get_prefix_is_sorted_and_limited_to_the_prefix(coordinator: Coordinator) -> None:
    for key in ["m/2", "m/10", "m/1", "m", "mx", "n/1", "l/1"]:
        coordinator.put(key, key.encode())
    assert coordinator.get_prefix("m/") == [("m/1", b"m/1"), ("m/10", b"m/10"), ("m/2", b"m/2")]
    assert [key for key, _ in coordinator.get_prefix("m")] == ["m", "m/1", "m/10", "m/2", "mx"]
    assert coordinator.get_prefix("zz/") == []


def test_invalid_arguments_are_rejected(coordinator: Coordinator) -> None:
    with pytest.raises(InvalidArgumentError, match="ttl_s"):
        coordinator.grant_lease(0)
    with pytest.raises(InvalidArgumentError, match="key"):
        coordinator.put("", b"v")


# -- leases -------------------------------------------------------------------------------------


def test_lease_expiry_deletes_only_the_lease_keys(coordinator: Coordinator) -> None:
    lease = coordinator.grant_lease(LEASE_TTL_S)
    coordinator.put("members/a", b"1", lease_id=lease)
    coordinator.put("members/b", b"2", lease_id=lease)
    coordinator.put("members/static", b"3")
    assert coordinator.get("members/a") == b"1"
    wait_until(lambda: coordinator.get_prefix("members/") == [("members/static", b"3")], EXPIRY_DEADLINE_S, "expiry")
    assert coordinator.keep_alive(lease) is False
    with pytest.raises(KeyNotFoundError, match="lease"):
        coordinator.put("members/c", b"late", lease_id=lease)


def test_keep_alive_extends_the_lease(coordinator: Coordinator) -> None:
    lease = coordinator.grant_lease(LEASE_TTL_S)
    coordinator.put("held", b"x", lease_id=lease)
    renew_until = time.monotonic() + 2.5 * LEASE_TTL_S
    while time.monotonic() < renew_until:
        assert coordinator.keep_alive(lease) is True
        assert coordinator.get("held") == b"x"
        time.sleep(LEASE_TTL_S / 4)  # pacing the renewals under test, not synchronisation
    wait_until(lambda: coordinator.get("held") is None, EXPIRY_DEADLINE_S, "expiry after renewals stop")


def test_revoke_deletes_keys_at_once_and_is_idempotent(coordinator: Coordinator) -> None:
    lease = coordinator.grant_lease(60)
    other = coordinator.grant_lease(60)
    coordinator.put("r/a", b"1", lease_id=lease)
    coordinator.put("r/b", b"2", lease_id=other)
    coordinator.revoke(lease)
    assert coordinator.get("r/a") is None
    assert coordinator.get("r/b") == b"2"
    assert coordinator.keep_alive(lease) is False
    coordinator.revoke(lease)  # already gone: no error
    with pytest.raises(KeyNotFoundError):
        coordinator.put("r/c", b"3", lease_id=lease)
    coordinator.revoke(other)


def test_put_without_lease_unbinds_the_key(coordinator: Coordinator) -> None:
    lease = coordinator.grant_lease(60)
    coordinator.put("u", b"leased", lease_id=lease)
    coordinator.put("u", b"free")
    coordinator.revoke(lease)
    assert coordinator.get("u") == b"free"


# -- watches ------------------------------------------------------------------------------------


def test_watch_sees_puts_and_deletes_under_its_prefix_only(coordinator: Coordinator) -> None:
    recorder = Recorder()
    cancel = coordinator.watch_prefix("w/", recorder)
    coordinator.put("w/a", b"1")
    coordinator.put("other/a", b"x")
    coordinator.put("w/a", b"2")
    assert coordinator.delete("w/a") is True
    assert coordinator.delete("w/missing") is False  # deleting nothing is not an event
    coordinator.put("w/fence", b"")
    assert recorder.wait_for(("w/fence", b"")) == [("w/a", b"1"), ("w/a", b"2"), ("w/a", None), ("w/fence", b"")]
    cancel()


def test_watch_reports_lease_expiry_and_revoke_as_deletes(coordinator: Coordinator) -> None:
    recorder = Recorder()
    coordinator.watch_prefix("m/", recorder)
    expiring = coordinator.grant_lease(LEASE_TTL_S)
    revoked = coordinator.grant_lease(60)
    coordinator.put("m/expiring", b"1", lease_id=expiring)
    coordinator.put("m/revoked", b"2", lease_id=revoked)
    coordinator.revoke(revoked)
    recorder.wait_for(("m/revoked", None))
    recorder.wait_for(("m/expiring", None), EXPIRY_DEADLINE_S)


def test_cancel_stops_callbacks(coordinator: Coordinator) -> None:
    cancelled, live = Recorder(), Recorder()
    cancel = coordinator.watch_prefix("c/", cancelled)
    coordinator.watch_prefix("c/", live)
    coordinator.put("c/before", b"1")
    cancelled.wait_for(("c/before", b"1"))
    cancel()
    cancel()  # idempotent
    coordinator.put("c/after", b"2")
    coordinator.put("c/fence", b"3")
    live.wait_for(("c/fence", b"3"))
    assert cancelled.snapshot() == [("c/before", b"1")]


def test_failing_callback_keeps_the_watch_alive(coordinator: Coordinator) -> None:
    recorder = Recorder()

    def callback(key: str, value: bytes | None) -> None:
        recorder(key, value)
        if key == "f/boom":
            raise RuntimeError("callback failure under test")

    coordinator.watch_prefix("f/", callback)
    coordinator.put("f/boom", b"1")
    coordinator.put("f/after", b"2")
    recorder.wait_for(("f/after", b"2"))


def test_callback_may_use_the_coordinator_and_cancel_itself(coordinator: Coordinator) -> None:
    seen: list[bytes | None] = []
    handle: dict[str, Callable[[], None]] = {}

    def callback(key: str, value: bytes | None) -> None:
        seen.append(coordinator.get(key))
        handle["cancel"]()

    handle["cancel"] = coordinator.watch_prefix("s/", callback)
    coordinator.put("s/one", b"1")
    wait_until(lambda: seen, 10, "callback ran")
    coordinator.put("s/two", b"2")
    recorder = Recorder()
    coordinator.watch_prefix("s/", recorder)
    coordinator.put("s/fence", b"")
    recorder.wait_for(("s/fence", b""))
    assert seen == [b"1"]


# -- lifecycle ----------------------------------------------------------------------------------


def test_close_is_idempotent_and_stops_everything(make_coordinator: MakeCoordinator) -> None:
    coordinator = make_coordinator()
    recorder = Recorder()
    coordinator.watch_prefix("z/", recorder)
    coordinator.put("z/a", b"1")
    recorder.wait_for(("z/a", b"1"))
    coordinator.close()
    coordinator.close()
    with pytest.raises(StoreClosedError):
        coordinator.get("z/a")
    with pytest.raises(StoreClosedError):
        coordinator.watch_prefix("z/", recorder)
    assert recorder.snapshot() == [("z/a", b"1")]


def test_registry_builds_a_protocol_conforming_coordinator(coordinator: Coordinator) -> None:
    assert isinstance(coordinator, Coordinator)


@attrs.frozen
class _CoordinationHolder:
    coordination: BackendConfig = config_field(doc="a coordination block under test", backend="coordinator")


def test_local_is_selected_by_kind_and_takes_no_options() -> None:
    parsed = load_config(_CoordinationHolder, {"coordination": {"kind": "local"}})
    coordinator = parsed.coordination.create("coordinator")
    try:
        assert isinstance(coordinator, Coordinator)
    finally:
        coordinator.close()
    with pytest.raises(ConfigError, match=r"coordination\.local.*takes no options"):
        load_config(_CoordinationHolder, {"coordination": {"kind": "local", "local": {"x": 1}}})


# -- etcd only ----------------------------------------------------------------------------------


@pytest.mark.etcd
def test_etcd_clients_share_keys_leases_and_watches(etcd_server: Any) -> None:
    namespace = f"/fx-coord-{uuid.uuid4().hex[:10]}/"
    registry = get_backends()
    first = registry.create("coordinator", "etcd", _etcd_options(etcd_server, namespace))
    second = registry.create("coordinator", "etcd", _etcd_options(etcd_server, namespace))
    try:
        recorder = Recorder()
        second.watch_prefix("members/", recorder)
        lease = first.grant_lease(60)
        first.put("members/a", b"1", lease_id=lease)
        recorder.wait_for(("members/a", b"1"))
        assert second.get("members/a") == b"1"
        assert second.keep_alive(lease) is True
        second.revoke(lease)
        recorder.wait_for(("members/a", None))
        assert first.get("members/a") is None
    finally:
        first.close()
        second.close()


@pytest.mark.etcd
def test_etcd_key_prefixes_are_separate_namespaces(etcd_server: Any) -> None:
    base = f"/fx-coord-{uuid.uuid4().hex[:10]}"
    registry = get_backends()
    blue = registry.create("coordinator", "etcd", _etcd_options(etcd_server, f"{base}/blue/"))
    green = registry.create("coordinator", "etcd", _etcd_options(etcd_server, f"{base}/green/"))
    try:
        green_events = Recorder()
        green.watch_prefix("", green_events)
        blue.put("k", b"blue")
        green.put("k", b"green")
        assert blue.get("k") == b"blue"
        assert blue.get_prefix("") == [("k", b"blue")]
        green_events.wait_for(("k", b"green"))
        assert green_events.snapshot() == [("k", b"green")]
    finally:
        blue.close()
        green.close()


@pytest.mark.etcd
def test_etcd_outage_raises_typed_errors_and_watches_resume(etcd_server: Any) -> None:
    namespace = f"/fx-coord-{uuid.uuid4().hex[:10]}/"
    registry = get_backends()
    watcher = registry.create("coordinator", "etcd", _etcd_options(etcd_server, namespace, timeout_s=2.0))
    writer = registry.create("coordinator", "etcd", _etcd_options(etcd_server, namespace, timeout_s=2.0))
    try:
        recorder = Recorder()
        watcher.watch_prefix("o/", recorder)
        writer.put("o/before", b"1")
        recorder.wait_for(("o/before", b"1"))
        with etcd_server.stopped():
            started = time.monotonic()
            with pytest.raises(ApiError):
                writer.put("o/during", b"x")
            assert time.monotonic() - started < 5
            # A new watch cannot be confirmed: bounded by timeout_s (2 s), never a hang.
            with pytest.raises(ApiError):
                writer.watch_prefix("o/", Recorder())
        # The first write after the restart lands before the watch has necessarily reconnected;
        # the watch resumes from its last revision and must still report it.
        wait_until(lambda: writer.put("o/after", b"2") is None, 15, "etcd usable again")
        writer.delete("o/before")
        recorder.wait_for(("o/before", None), 15)
        assert ("o/after", b"2") in recorder.snapshot()
        assert ("o/during", b"x") not in recorder.snapshot()
    finally:
        watcher.close()
        writer.close()


def test_etcd_options_are_validated() -> None:
    config_type = get_backends().entry("coordinator", "etcd").config_type
    with pytest.raises(ConfigError, match="endpoints"):
        load_config(config_type, {"endpoints": []})
    with pytest.raises(ConfigError, match=r"endpoints.*host:port"):
        load_config(config_type, {"endpoints": ["localhost"]})
    with pytest.raises(ConfigError, match="timeout_s"):
        load_config(config_type, {"endpoints": ["127.0.0.1:2379"], "timeout_s": 0})
    with pytest.raises(InvalidArgumentError, match="endpoints"):
        get_backends().create("coordinator", "etcd", config_type(endpoints=[]))
