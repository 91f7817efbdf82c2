"""Each register hook, implemented by a small plugin in this module, contributes something Fluxon then uses.

Backend hooks: the kind is built by the registry from parsed options, checked against its Protocol,
and — where a Fluxon config field selects that category — chosen by ``kind:`` in YAML. The command
hook: the ``fluxon`` CLI runs what a plugin adds. The shipped default of each category comes through
the same hook. (``fluxon_register_roles`` is in test_role_hook.py; the lifecycle hooks and failure
handling of every hook are in test_plugins.py and test_cli_plugins.py.)
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import pytest

from fluxon_core.cli import main as fluxon_main
from fluxon_core.config import config_field, load_yaml_text
from fluxon_core.errors import PermissionDeniedError, UnknownPathError
from fluxon_core.hookspecs import RegisterBackend, RegisterCommand, hookimpl
from fluxon_core.kv.config import KvMasterConfig
from fluxon_core.kv.coordination import create_coordinator
from fluxon_core.plugins import FluxonPluginManager, PluginError, get_backends, get_plugin_manager
from fluxon_core.protocols import AccessStore, CacheBackend, Coordinator, Transport
from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_fs.config import MasterPanelConfig

Install = Callable[[object, str], None]


@pytest.fixture
def install() -> Iterator[Install]:
    """Register plugin objects on the process-wide manager (what config loading consults) for one test."""
    manager = get_plugin_manager()
    names: list[str] = []

    def register(plugin: object, name: str) -> None:
        manager.register(plugin, name=name)
        names.append(name)

    yield register
    for name in names:
        manager.unregister(name)


def private_registry(plugin: object, name: str) -> Any:
    manager = FluxonPluginManager()
    manager.register(plugin, name=name)
    assert manager.failures == []
    return manager.backends()


def test_the_shipped_defaults_come_through_the_register_hooks() -> None:
    registry = get_backends()
    provided = {
        ("transport", "zmq"): "zmq_transport",
        ("cache", "shm"): "shm_cache",
        ("state_store", "sqlite"): "sqlite_state",
        ("access_store", "sqlite"): "sqlite_access",
        ("coordinator", "local"): "local_coordination",
        ("metrics_sink", "prometheus"): "prometheus_metrics",
    }
    assert {key: registry.entry(*key).plugin for key in provided} == provided


# ---------------------------------------------------------------- fluxon_register_transports


class _LoopServer:
    def __init__(self, endpoint: str, authenticate: Callable[[RpcCall], None] | None) -> None:
        self._endpoint = endpoint
        self.authenticate = authenticate
        self.handlers: dict[str, Callable[[RpcCall], RpcMessage]] = {}

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def register(self, path: str, handler: Callable[[RpcCall], RpcMessage]) -> None:
        self.handlers[path] = handler

    def unregister(self, path: str) -> None:
        self.handlers.pop(path, None)

    def close(self) -> None:
        self.handlers.clear()


class _LoopClient:
    def __init__(self, servers: dict[str, _LoopServer]) -> None:
        self._servers = servers

    def call(
        self,
        endpoint: str,
        path: str,
        message: RpcMessage,
        *,
        timeout_s: float = 10.0,
        caller: str = "",
        auth: str = "",
    ) -> RpcMessage:
        server = self._servers[endpoint]
        call = RpcCall(path, caller, auth, message, time.monotonic() + timeout_s)
        if server.authenticate is not None:
            server.authenticate(call)
        handler = server.handlers.get(path)
        if handler is None:
            raise UnknownPathError(f"no handler for {path} at {endpoint}")
        return handler(call)

    def close(self) -> None:
        pass


@attrs.frozen
class LoopOptions:
    """Options of transport ``kind: loop``."""

    scheme: str = config_field(doc="endpoint scheme served in this process.", default="loop")


class _LoopTransport:
    """Calls handlers in the calling thread: a transport inside one process."""

    def __init__(self, options: LoopOptions | None) -> None:
        self.scheme = (options or LoopOptions()).scheme
        self.servers: dict[str, _LoopServer] = {}

    def bind_server(
        self, bind_address: str, *, worker_threads: int = 8, authenticate: Callable[[RpcCall], None] | None = None
    ) -> _LoopServer:
        endpoint = f"{self.scheme}://{bind_address.split('://')[-1]}"
        server = self.servers[endpoint] = _LoopServer(endpoint, authenticate)
        return server

    def new_client(self) -> _LoopClient:
        return _LoopClient(self.servers)


class TransportPlugin:
    @hookimpl
    def fluxon_register_transports(self, register: RegisterBackend) -> None:
        register("loop", _LoopTransport, config_type=LoopOptions)


def test_a_transport_plugin_carries_rpc_calls() -> None:
    transport = private_registry(TransportPlugin(), "loop_transport").create("transport", "loop", {"scheme": "mem"})
    assert isinstance(transport, Transport)

    def refuse_strangers(call: RpcCall) -> None:
        if call.auth != "secret":
            raise PermissionDeniedError(f"{call.caller} may not call {call.path}")

    server = transport.bind_server("tcp://node-a:0", authenticate=refuse_strangers)
    server.register("/echo", lambda call: RpcMessage({"echo": call.message.meta["text"], "from": call.caller}))
    client = transport.new_client()
    reply = client.call(server.endpoint, "/echo", RpcMessage({"text": "hi"}), caller="c1", auth="secret")
    assert server.endpoint == "mem://node-a:0" and reply.meta == {"echo": "hi", "from": "c1"}
    with pytest.raises(PermissionDeniedError):
        client.call(server.endpoint, "/echo", RpcMessage({"text": "hi"}), caller="c2")
    server.unregister("/echo")
    with pytest.raises(UnknownPathError):
        client.call(server.endpoint, "/echo", RpcMessage({"text": "hi"}), auth="secret")


# ---------------------------------------------------------------- fluxon_register_caches


@attrs.frozen
class DictCacheOptions:
    """Options of cache ``kind: dict``."""

    capacity_bytes: int = config_field(doc="byte budget.")


class _DictCache:
    """Values in a dict, least recently used evicted first."""

    def __init__(self, options: DictCacheOptions) -> None:
        self.capacity = options.capacity_bytes
        self.values: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.counts = collections.Counter[str]()

    def put(self, key: str, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        self.values.pop(key, None)
        self.values[key] = b"".join(bytes(part) for part in parts)
        while sum(map(len, self.values.values())) > self.capacity:
            self.values.popitem(last=False)
            self.counts["evictions"] += 1

    def get(self, key: str) -> memoryview | None:
        value = self.values.get(key)
        self.counts["misses" if value is None else "hits"] += 1
        if value is None:
            return None
        self.values.move_to_end(key)
        return memoryview(value).toreadonly()

    def delete(self, key: str) -> bool:
        return self.values.pop(key, None) is not None

    def contains(self, key: str) -> bool:
        return key in self.values

    def stats(self) -> dict[str, int]:
        used = sum(map(len, self.values.values()))
        counts = {name: self.counts[name] for name in ("hits", "misses", "evictions")}
        return {"capacity_bytes": self.capacity, "used_bytes": used, "entries": len(self.values), **counts}

    def close(self) -> None:
        self.values.clear()


class CachePlugin:
    @hookimpl
    def fluxon_register_caches(self, register: RegisterBackend) -> None:
        register("dict", _DictCache, config_type=DictCacheOptions)


def test_a_cache_plugin_holds_values_within_its_budget() -> None:
    cache = private_registry(CachePlugin(), "dict_cache").create("cache", "dict", {"capacity_bytes": 10})
    assert isinstance(cache, CacheBackend)
    cache.put("a", [b"1234", memoryview(b"56")])
    cache.put("b", [b"abcd"])
    view = cache.get("a")
    assert view is not None and bytes(view) == b"123456" and view.readonly
    cache.put("c", [b"xyz"])  # over budget: b, the least recently used, goes
    assert (cache.contains("a"), cache.contains("b"), cache.contains("c")) == (True, False, True)
    assert cache.stats() == {
        "capacity_bytes": 10,
        "used_bytes": 9,
        "entries": 2,
        "hits": 1,
        "misses": 0,
        "evictions": 1,
    }


# ---------------------------------------------------------------- fluxon_register_access_stores


@attrs.frozen
class FixedUsersOptions:
    """Options of access store ``kind: fixed``."""

    passwords: dict[str, str] = config_field(doc="username -> password.", factory=dict)


class _FixedUsers:
    def __init__(self, options: FixedUsersOptions) -> None:
        self.passwords = dict(options.passwords)

    def verify_password(self, username: str, password: str) -> bool:
        return self.passwords.get(username) == password

    def close(self) -> None:
        self.passwords.clear()


class AccessPlugin:
    @hookimpl
    def fluxon_register_access_stores(self, register: RegisterBackend) -> None:
        register("fixed", _FixedUsers, config_type=FixedUsersOptions)


PANEL_YAML = """
bootstrap_access_model:
  users: [{username: admin, password: admin-pw, can_manage_users: true}]
access_store:
  kind: fixed
  fixed:
    passwords: {admin: admin-pw}
"""


def test_an_access_store_plugin_is_selected_by_the_fs_master_config(install: Install) -> None:
    install(AccessPlugin(), "fixed_access")
    panel = load_yaml_text(MasterPanelConfig, PANEL_YAML, "fluxon_fs.master_panel")
    backend = panel.access_store_backend()
    assert backend.kind == "fixed" and backend.options == FixedUsersOptions({"admin": "admin-pw"})
    # _FixedUsers checks passwords but offers none of the users, grants and tokens the fs master needs:
    # the registry refuses it when it is built, naming the contract, rather than at the master's first call.
    assert not isinstance(_FixedUsers(backend.options), AccessStore)
    with pytest.raises(
        PluginError, match="access_store kind 'fixed' returned _FixedUsers, which does not implement AccessStore"
    ):
        backend.create("access_store")


# ---------------------------------------------------------------- fluxon_register_coordinators


@attrs.frozen
class PrefixedOptions:
    """Options of coordinator ``kind: prefixed``."""

    key_prefix: str = config_field(doc="namespace of this coordinator's keys inside the local one.")


class _PrefixedCoordinator:
    """The built-in ``local`` coordinator, with every key moved under ``key_prefix``."""

    def __init__(self, options: PrefixedOptions) -> None:
        self.prefix = options.key_prefix
        self.inner: Coordinator = get_backends().create("coordinator", "local")

    def grant_lease(self, ttl_s: float) -> int:
        return self.inner.grant_lease(ttl_s)

    def keep_alive(self, lease_id: int) -> bool:
        return self.inner.keep_alive(lease_id)

    def revoke(self, lease_id: int) -> None:
        self.inner.revoke(lease_id)

    def put(self, key: str, value: bytes, *, lease_id: int | None = None) -> None:
        self.inner.put(self.prefix + key, value, lease_id=lease_id)

    def get(self, key: str) -> bytes | None:
        return self.inner.get(self.prefix + key)

    def get_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        return [(key[len(self.prefix) :], value) for key, value in self.inner.get_prefix(self.prefix + prefix)]

    def delete(self, key: str) -> bool:
        return self.inner.delete(self.prefix + key)

    def watch_prefix(self, prefix: str, callback: Callable[[str, bytes | None], None]) -> Callable[[], None]:
        return self.inner.watch_prefix(
            self.prefix + prefix, lambda key, value: callback(key[len(self.prefix) :], value)
        )

    def close(self) -> None:
        self.inner.close()


class CoordinatorPlugin:
    @hookimpl
    def fluxon_register_coordinators(self, register: RegisterBackend) -> None:
        register("prefixed", _PrefixedCoordinator, config_type=PrefixedOptions)


def test_a_coordinator_plugin_is_selected_by_the_kv_master_config(install: Install) -> None:
    install(CoordinatorPlugin(), "prefixed_coordination")
    config = load_yaml_text(
        KvMasterConfig, "instance_key: m\ncluster_name: c\ncoordination: {kind: prefixed, prefixed: {key_prefix: /t/}}"
    )
    coordinator = create_coordinator(config.coordination)
    try:
        assert isinstance(coordinator, _PrefixedCoordinator) and isinstance(coordinator, Coordinator)
        lease = coordinator.grant_lease(30)
        coordinator.put("members/a", b"1", lease_id=lease)
        assert coordinator.get_prefix("members/") == [("members/a", b"1")]
        assert coordinator.inner.get("/t/members/a") == b"1"
        coordinator.revoke(lease)
        assert coordinator.get("members/a") is None
    finally:
        coordinator.close()


# ---------------------------------------------------------------- fluxon_register_commands


class CommandPlugin:
    @hookimpl
    def fluxon_register_commands(self, register: RegisterCommand) -> None:
        def add_arguments(parser: argparse.ArgumentParser) -> None:
            parser.add_argument("--who", default="world")

        def run(args: argparse.Namespace) -> int:
            print(f"hello {args.who}")
            return 3

        register("hello-test", "greet someone", add_arguments, run)


def test_a_command_plugin_adds_a_cli_command(install: Install, capsys: pytest.CaptureFixture[str]) -> None:
    install(CommandPlugin(), "hello_command")
    assert fluxon_main(["hello-test", "--who", "plugins"]) == 3
    assert capsys.readouterr().out == "hello plugins\n"
