"""Backend kinds chosen in YAML: the transport and the pool of real role processes and external
clients, options reaching the factories, and the unknown-kind error of every category.

A third-party plugin (a real distribution on ``PYTHONPATH``, found through its entry point) offers
``recording_zmq`` and ``recording_shm``: the zmq transport and the shm pool, each appending the
options its factory received to a JSON-lines file, so the test sees which process built what. It
also offers ``bare_cache``, a cache kind whose options lack the pool placement fields.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from fluxon_core import rpc
from fluxon_core.addresses import primary_host_address
from fluxon_core.config import BackendConfig, ConfigError, config_field, load_config
from fluxon_core.kv.config import KvClientSettings, KvMasterConfig
from fluxon_core.kv.shared_json import read_shared_json, shared_json_path
from fluxon_core.plugins import get_backends
from fluxon_core.runtime import start_kv_master_process, start_owner_kvclient_process
from fluxon_core.runtime.readiness import RoleStartError
from tests.support.kv_cluster import kv_cluster
from tests.support.plugin_packages import FakeDistribution, json_output, make_site, run_python

RECORDS_ENV = "FLUXON_TEST_BACKEND_RECORDS"

RECORDING_PLUGIN = FakeDistribution(
    "fluxon-test-recorders",
    {"recorders": "fake_recorders"},
    {
        "fake_recorders": f'''
            """recording_zmq and recording_shm: the default transport and pool, recording their options."""

            import json
            import os

            import attrs

            from fluxon_core.config import ByteSize, config_field
            from fluxon_core.hookspecs import RegisterBackend, hookimpl
            from fluxon_plugins.shm_cache.config import ShmCacheConfig
            from fluxon_plugins.shm_cache.plugin import create_shm_cache
            from fluxon_plugins.zmq_transport.config import ZmqTransportConfig
            from fluxon_plugins.zmq_transport.transport import ZmqTransport


            def record(label, **fields):
                with open(os.environ[{RECORDS_ENV!r}], "a", encoding="utf-8") as out:
                    out.write(json.dumps({{"pid": os.getpid(), "label": label, **fields}}) + "\\n")


            @attrs.frozen
            class RecordingTransportOptions:
                label: str = config_field(doc="written with the record", default="")
                io_threads: int = config_field(doc="passed on to zmq", default=1)


            def create_transport(options):
                record(options.label, category="transport", io_threads=options.io_threads)
                return ZmqTransport(ZmqTransportConfig(io_threads=options.io_threads))


            @attrs.frozen
            class RecordingPoolOptions:
                label: str = config_field(doc="written with the record", default="")
                path: str | None = config_field(doc="set by the KV plane", default=None)
                role: str = config_field(doc="set by the KV plane", default="owner")
                capacity: ByteSize = config_field(doc="set by the KV plane", default=ByteSize(0))


            def create_pool(options):
                record(options.label, category="cache", role=options.role, path=options.path, capacity=options.capacity)
                return create_shm_cache(ShmCacheConfig(path=options.path, role=options.role, capacity=options.capacity))


            @hookimpl
            def fluxon_register_transports(register: RegisterBackend) -> None:
                register("recording_zmq", create_transport, config_type=RecordingTransportOptions)


            @attrs.frozen
            class BareCacheOptions:
                label: str = config_field(doc="no placement fields: this kind cannot hold the KV pool", default="")


            @hookimpl
            def fluxon_register_caches(register: RegisterBackend) -> None:
                register("recording_shm", create_pool, config_type=RecordingPoolOptions)
                register("bare_cache", create_pool, config_type=BareCacheOptions)
        '''
    },
)

# Child code: try new_store with each config of CONFIGS, report what happened, as one JSON line.
EXTERNAL_CLIENTS = """
import json

from fluxon_core.kv import new_store

outcomes = []
for config in CONFIGS:
    result = new_store(config)
    if result.is_err():
        outcomes.append({"error": str(result.unwrap_error())})
        continue
    store = result.unwrap()
    store.put_blocking("k-" + config["instance_key"], {"v": b"payload"}).unwrap("put failed")
    value = store.get_blocking("k-" + config["instance_key"]).unwrap("get failed").access()["v"]
    outcomes.append({"endpoint": store.endpoint(), "value": bytes(value).decode()})
    store.close()
print(json.dumps(outcomes))
"""


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def recorders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """(site directory holding the recording plugin, records file); role processes started here see both."""
    site = make_site(tmp_path, RECORDING_PLUGIN)
    record_file = tmp_path / "records.jsonl"
    record_file.touch()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(RECORDS_ENV, str(record_file))
    yield site, record_file


@pytest.fixture
def restore_process_transport() -> Iterator[None]:
    """new_store in this process selects its transport; put the default back for the other tests."""
    yield
    rpc.set_default_transport(rpc.DEFAULT_TRANSPORT_KIND)


def test_role_processes_and_external_clients_build_the_transport_and_pool_their_yaml_selects(
    recorders: tuple[Path, Path], tmp_path: Path
) -> None:
    site, record_file = recorders
    with kv_cluster() as cluster:
        cluster.start_master(transport={"kind": "recording_zmq", "recording_zmq": {"label": "master"}})
        cluster.start_owner(
            "o1",
            "h1",
            dram="32MiB",
            client_fields={
                "transport": {"kind": "recording_zmq", "recording_zmq": {"label": "owner", "io_threads": 2}},
                "pool": {"kind": "recording_shm", "recording_shm": {"label": "owner-pool"}},
            },
        )
        shared = read_shared_json(shared_json_path(cluster.root / "h1" / cluster.cluster_name))
        assert shared.pool_kind == "recording_shm"

        transport = {"kind": "recording_zmq", "recording_zmq": {"label": "external"}}
        configs = [
            # No pool block: attaches with the owner's kind, default options.
            cluster.external_config("e-inherits", "h1", client_fields={"transport": transport}),
            # Naming the owner's kind tunes this client's side of the pool.
            cluster.external_config(
                "e-names",
                "h1",
                client_fields={
                    "transport": transport,
                    "pool": {"kind": "recording_shm", "recording_shm": {"label": "external-pool"}},
                },
            ),
            # Naming another kind is refused.
            cluster.external_config(
                "e-mismatch", "h1", client_fields={"transport": transport, "pool": {"kind": "shm"}}
            ),
        ]
        outcomes = json_output(run_python(f"CONFIGS = {configs!r}\n{EXTERNAL_CLIENTS}", [site], tmp_path))
        assert cluster.master is not None
        master_pid, owner_pid = cluster.master.pid, cluster.owners["o1"].pid

    assert [outcome.get("value") for outcome in outcomes[:2]] == ["payload", "payload"]
    assert outcomes[2]["error"] == (
        "StoreInitFailedError: pool.kind 'shm' does not match the owner's pool kind 'recording_shm' "
        f"(pool_kind in {cluster.root / 'h1' / cluster.cluster_name / 'shared.json'}); "
        "name 'recording_shm' or leave pool out to attach with the owner's kind"
    )
    pool_path = str(cluster.shm_root / "h1" / cluster.cluster_name / "pool")
    built = sorted(
        (r["category"], r["label"], r.get("role"), r.get("path"), r.get("capacity"), r.get("io_threads"))
        for r in records(record_file)
    )
    assert built == [
        ("cache", "", "reader", pool_path, 0, None),
        ("cache", "external-pool", "reader", pool_path, 0, None),
        ("cache", "owner-pool", "owner", pool_path, 32 * 1024**2, None),
        ("transport", "external", None, None, None, 1),
        ("transport", "master", None, None, None, 1),
        ("transport", "owner", None, None, None, 2),
    ]
    by_label = {(r["category"], r["label"]): r["pid"] for r in records(record_file)}
    assert by_label[("transport", "master")] == master_pid
    assert by_label[("transport", "owner")] == by_label[("cache", "owner-pool")] == owner_pid
    # One transport per process: the external process built it once for its three stores.
    assert by_label[("transport", "external")] == by_label[("cache", "")] == by_label[("cache", "external-pool")]


def test_zmq_options_from_yaml_change_what_each_process_advertises(restore_process_transport: None) -> None:
    # A wildcard bind is advertised with the transport's advertise_host (default: the host's primary address).
    advertise = {"kind": "zmq", "zmq": {"advertise_host": "localhost"}}
    with kv_cluster() as cluster:
        master = cluster.start_master(host="0.0.0.0", transport=advertise)
        assert master.endpoint.startswith("tcp://localhost:")
        cluster.start_owner("o1", "h1", rpc_host="0.0.0.0", client_fields={"transport": advertise})
        shared = read_shared_json(shared_json_path(cluster.root / "h1" / cluster.cluster_name))
        assert shared.owner_peer_endpoint.startswith("tcp://localhost:")

        plain = cluster.external("e-plain", "h1")
        assert plain.endpoint().startswith(f"tcp://{primary_host_address()}:")
        client = cluster.external("e-advertised", "h1", client_fields={"transport": advertise})
        assert client.endpoint().startswith("tcp://localhost:")
        # The last store's selection is the process's transport; each store keeps the one it was built with.
        assert client.transport() is rpc.default_transport() is not plain.transport()
        assert client.transport().config.advertise_host == "localhost"  # type: ignore[attr-defined]
        client.put_blocking("k", {"v": 1}).unwrap("put failed")
        assert plain.get_blocking("k").unwrap("get failed").access() == {"v": 1}


# ---------------------------------------------------------------- unknown kinds


@attrs.frozen
class _StoresHost:
    """Config fields of the categories no core config holds (the FS configs select them)."""

    transfer_state_store: BackendConfig | None = config_field(doc="d", default=None, backend="state_store")
    access_store: BackendConfig | None = config_field(doc="d", default=None, backend="access_store")


_SPEC = {"cluster_name": "c", "share_mem_path": "/dev/shm/fx-unknown-kinds"}
_OWNER = {"instance_key": "o", "contribute_to_cluster_pool_size": {"dram": "1MiB"}}

UNKNOWN_KIND_CASES = [
    pytest.param(KvMasterConfig, {"instance_key": "m", "cluster_name": "c"}, "transport", "transport", id="master-transport"),
    pytest.param(KvMasterConfig, {"instance_key": "m", "cluster_name": "c"}, "coordination", "coordinator", id="master-coordination"),
    pytest.param(KvMasterConfig, {"instance_key": "m", "cluster_name": "c", "monitoring": {"sinks": [{"kind": "nope"}]}}, "monitoring.sinks[0]", "metrics_sink", id="master-metrics-sink"),
    pytest.param(KvClientSettings, {"instance_key": "e", "fluxonkv_spec": _SPEC}, "transport", "transport", id="client-transport"),
    pytest.param(KvClientSettings, {"instance_key": "e", "fluxonkv_spec": _SPEC}, "pool", "cache", id="client-pool"),
    pytest.param(KvClientSettings, {**_OWNER, "fluxonkv_spec": {**_SPEC, "master_address": "127.0.0.1:1"}}, "fluxonkv_spec.coordination", "coordinator", id="owner-coordination"),
    pytest.param(_StoresHost, {}, "transfer_state_store", "state_store", id="state-store"),
    pytest.param(_StoresHost, {}, "access_store", "access_store", id="access-store"),
]  # fmt: skip


def _with_block(data: dict[str, Any], path: str, block: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``block`` at dotted ``path``; a path ending in ``[0]`` puts a one-item list there."""
    out = json.loads(json.dumps(data))
    *parents, leaf = path.replace("[0]", "").split(".")
    node = out
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = [block] if path.endswith("[0]") else block
    return out


@pytest.mark.parametrize(("config_class", "data", "path", "category"), UNKNOWN_KIND_CASES)
def test_an_unknown_kind_names_the_field_and_the_installed_kinds(
    config_class: type, data: dict[str, Any], path: str, category: str
) -> None:
    installed = get_backends().kinds(category)
    assert installed, f"no {category} kind installed"
    with pytest.raises(ConfigError) as caught:
        load_config(config_class, _with_block(data, path, {"kind": "nope"}))
    assert str(caught.value) == (
        f"{path}.kind is not usable: unknown {category} kind 'nope'; available kinds: {', '.join(installed)}"
    )


def test_a_role_process_with_an_unknown_kind_fails_naming_the_field(tmp_path: Path) -> None:
    master = start_kv_master_process(
        {"instance_key": "m", "cluster_name": "c", "transport": {"kind": "carrier-pigeon"}}, workdir=tmp_path / "m"
    )
    with pytest.raises(RoleStartError, match=r"transport\.kind is not usable: unknown transport kind 'carrier-pigeon'"):
        master.wait_ready(30)
    owner_config = {**_OWNER, "fluxonkv_spec": {**_SPEC, "master_address": "127.0.0.1:1"}, "pool": {"kind": "nope"}}
    owner = start_owner_kvclient_process(owner_config, workdir=tmp_path / "o")
    with pytest.raises(
        RoleStartError, match=r"pool\.kind is not usable: unknown cache kind 'nope'; available kinds: shm"
    ):
        owner.wait_ready(30)


def test_a_default_kind_that_is_not_installed_is_reported_like_a_written_one(tmp_path: Path) -> None:
    # Without pyzmq the zmq_transport plugin fails to import; the implicit `transport: {kind: zmq}` says so.
    proc = run_python(
        f"""
        import json, sys
        sys.modules["zmq"] = None
        from fluxon_core.kv import new_store
        error = new_store({{"instance_key": "e", "fluxonkv_spec": {_SPEC!r}}}).unwrap_error()
        print(json.dumps(str(error)))
        """,
        [],
        tmp_path,
    )
    message = json_output(proc)
    assert "transport.kind is not usable: unknown transport kind 'zmq'; available kinds: none; " in message
    assert "plugins that failed to load: zmq_transport (ModuleNotFoundError: import of zmq halted" in message


# ---------------------------------------------------------------- the pool block


@pytest.mark.parametrize(
    ("options", "field", "source"),
    [
        ({"path": "/dev/shm/elsewhere"}, "path", "fluxonkv_spec.shared_memory_path"),
        ({"role": "reader"}, "role", "contribute_to_cluster_pool_size.dram"),
        ({"capacity": "1GiB"}, "capacity", "contribute_to_cluster_pool_size.dram"),
    ],
)
def test_a_pool_block_leaves_the_placement_to_the_kv_plane(options: dict[str, Any], field: str, source: str) -> None:
    data = {**_OWNER, "fluxonkv_spec": {**_SPEC, "master_address": "127.0.0.1:1"}}
    with pytest.raises(ConfigError, match=rf"^pool\.shm\.{field} is set by the KV plane from {source}"):
        load_config(KvClientSettings, {**data, "pool": {"kind": "shm", "shm": options}})
    tuned = load_config(KvClientSettings, {**data, "pool": {"kind": "shm", "shm": {"view_cache_entries": 8}}})
    assert tuned.pool.options.view_cache_entries == 8


def test_a_cache_kind_without_placement_fields_cannot_be_the_pool(recorders: tuple[Path, Path], tmp_path: Path) -> None:
    site, _ = recorders
    proc = run_python(
        f"""
        import json
        from fluxon_core.kv import new_store
        error = new_store({{"instance_key": "e", "fluxonkv_spec": {_SPEC!r}, "pool": {{"kind": "bare_cache"}}}})
        print(json.dumps(str(error.unwrap_error())))
        """,
        [site],
        tmp_path,
    )
    assert json_output(proc).endswith(
        "pool.kind names cache kind 'bare_cache' of plugin 'recorders', which cannot hold the KV pool: "
        "its options lack path, role, capacity"
    )


def test_the_defaults_stay_zmq_and_shm(restore_process_transport: None) -> None:
    with kv_cluster() as cluster:
        cluster.start_master()
        cluster.start_owner("o1", "h1")
        shared = read_shared_json(shared_json_path(cluster.root / "h1" / cluster.cluster_name))
        assert shared.pool_kind == "shm"
        client = cluster.external("e1", "h1")
        client.put_blocking("k", {"v": 1}).unwrap("put failed")
        transport = rpc.default_transport()
        assert type(transport).__module__.startswith("fluxon_plugins.zmq_transport")
        assert transport.config == get_backends().options("transport", "zmq")  # type: ignore[attr-defined]
