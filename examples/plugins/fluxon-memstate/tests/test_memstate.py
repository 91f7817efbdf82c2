"""What a plugin author tests: Fluxon finds the plugin through its entry point, YAML selects it, it behaves.

Run with the package installed: ``FLUXON_LOAD_PLUGINS=memstate python -m pytest tests``.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest

from fluxon_core.config import BackendConfig, ConfigError, config_field, load_yaml_text
from fluxon_core.errors import StoreClosedError
from fluxon_core.plugins import FluxonPluginManager, get_plugin_manager, reset_plugin_manager_for_tests
from fluxon_core.protocols import StateStore


@attrs.frozen
class JobsConfig:
    """A host config with one state-store block, as Fluxon's own config classes declare it."""

    transfer_state_store: BackendConfig = config_field(doc="where job state lives.", backend="state_store")


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[FluxonPluginManager]:
    # Fluxon's defaults plus this plugin only, so other installed plugins cannot change the outcome.
    monkeypatch.setenv("FLUXON_LOAD_PLUGINS", "memstate")
    reset_plugin_manager_for_tests()
    yield get_plugin_manager()
    reset_plugin_manager_for_tests()


def test_found_through_its_entry_point(manager: FluxonPluginManager) -> None:
    info = {plugin.name: plugin for plugin in manager.plugins()}["memstate"]
    assert (info.origin, info.distribution, info.module) == ("third-party", "fluxon-memstate", "fluxon_memstate.plugin")
    assert manager.backends().entry("state_store", "memory").plugin == "memstate"


def test_selected_from_yaml(manager: FluxonPluginManager) -> None:
    config = load_yaml_text(JobsConfig, "transfer_state_store: {kind: memory, memory: {space: yaml-test}}")
    store = config.transfer_state_store.create("state_store")
    assert isinstance(store, StateStore)
    store.put("a", b"1")
    assert store.get("a") == b"1"


def test_options_are_checked(manager: FluxonPluginManager) -> None:
    with pytest.raises(ConfigError, match=r"transfer_state_store\.memory\.key_prefix must start and end with '/'"):
        load_yaml_text(JobsConfig, "transfer_state_store: {kind: memory, memory: {key_prefix: jobs}}")


def test_behaves_as_a_state_store(manager: FluxonPluginManager) -> None:
    store = manager.backends().create("state_store", "memory", {"space": "contract", "key_prefix": "/a/"})
    store.put("job/1", b"one")
    store.batch_write([("job/2", b"two"), ("job/3", b"three"), ("other", b"x")], deletes=["job/1"])
    assert list(store.scan_prefix("job/")) == [("job/2", b"two"), ("job/3", b"three")]
    assert list(store.scan_prefix("job/", limit=1)) == [("job/2", b"two")]
    assert store.compare_and_set("job/2", b"two", b"TWO") is True
    assert store.compare_and_set("job/2", b"two", b"again") is False
    assert store.compare_and_set("job/9", None, b"new") is True
    assert store.compare_and_set("job/9", b"new", None) is True and store.get("job/9") is None
    assert store.delete("job/3") is True and store.delete("job/3") is False
    # Another handle on the same space sees the data; another prefix does not.
    assert (
        manager.backends().create("state_store", "memory", {"space": "contract", "key_prefix": "/a/"}).get("job/2")
        == b"TWO"
    )
    assert (
        manager.backends().create("state_store", "memory", {"space": "contract", "key_prefix": "/b/"}).get("job/2")
        is None
    )
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.get("job/2")
