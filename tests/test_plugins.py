"""Plugin discovery, FLUXON_LOAD_PLUGINS, failure isolation, duplicates and the scan-once cache.

Discovery scenarios run in child interpreters that find fake distributions (real ``.dist-info``
directories on ``PYTHONPATH``) through ``importlib.metadata``, exactly as installed plugins are
found; the registry and lifecycle API is exercised in-process on private managers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from fluxon_core.config import ConfigTypeError
from fluxon_core.hookspecs import hookimpl
from fluxon_core.plugins import (
    DuplicateKindError,
    FluxonPluginManager,
    PluginError,
    UnknownBackendError,
    allowed_plugin_names,
)
from fluxon_core.protocols import MetricsSink
from tests.support.plugin_packages import (
    MARKERS_ENV,
    fake_plugin,
    install_example_plugin,
    json_output,
    make_site,
    probe,
    run_python,
)

# ---------------------------------------------------------------- discovery through entry points


def test_plugins_are_discovered_through_entry_points_with_their_origin(tmp_path: Path) -> None:
    site = make_site(tmp_path, fake_plugin("fluxon-fake-sinks", "fakesinks", sinks=["fake_sink"]))
    view = probe([site], tmp_path)
    assert view["plugins"]["fakesinks"] == {
        "origin": "third-party",
        "distribution": "fluxon-fake-sinks",
        "module": "fake_fakesinks",
    }
    # The project's own plugins arrive through the same entry-point group, marked as defaults.
    assert view["plugins"]["sqlite_state"]["origin"] == "default"
    assert view["plugins"]["sqlite_state"]["distribution"] == "fluxon"
    assert "fake_sink" in view["kinds"]["metrics_sink"]
    assert "sqlite" in view["kinds"]["state_store"]
    assert not [f for f in view["failures"] if f[0] == "fakesinks"]


def test_a_discovered_backend_is_built_and_checked_against_its_protocol(tmp_path: Path) -> None:
    site = make_site(tmp_path, fake_plugin("fluxon-fake-sinks", "fakesinks", sinks=["fake_sink"]))
    proc = run_python(
        """
        import json
        from fluxon_core.plugins import get_backends
        sink = get_backends().create("metrics_sink", "fake_sink")
        sink.record("requests", 3.0)
        print(json.dumps({"type": type(sink).__module__, "samples": sink.samples}))
        """,
        [site],
        tmp_path,
    )
    assert json_output(proc) == {"type": "fake_fakesinks", "samples": [["requests", 3.0]]}


# ---------------------------------------------------------------- FLUXON_LOAD_PLUGINS


@pytest.fixture
def two_marker_plugins(tmp_path: Path) -> Path:
    return make_site(
        tmp_path,
        fake_plugin("fluxon-fake-alpha", "alpha", sinks=["alpha_sink"]),
        fake_plugin("fluxon-fake-beta", "beta", sinks=["beta_sink"]),
    )


def _markers(tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    markers = tmp_path / name
    markers.mkdir()
    return markers, {MARKERS_ENV: str(markers)}


def test_unset_load_plugins_loads_every_plugin(tmp_path: Path, two_marker_plugins: Path) -> None:
    markers, env = _markers(tmp_path, "unset")
    view = probe([two_marker_plugins], tmp_path, None, **env)
    assert {"alpha", "beta"} <= set(view["plugins"])
    assert sorted(p.name for p in markers.iterdir()) == ["alpha", "beta"]


def test_empty_load_plugins_loads_only_the_defaults_and_imports_nothing_else(
    tmp_path: Path, two_marker_plugins: Path
) -> None:
    markers, env = _markers(tmp_path, "empty")
    view = probe([two_marker_plugins], tmp_path, "", **env)
    assert list(markers.iterdir()) == []  # the excluded modules never ran
    assert not {"alpha", "beta"} & set(view["plugins"])
    assert {info["origin"] for info in view["plugins"].values()} == {"default"}
    assert "sqlite" in view["kinds"]["state_store"]
    assert "alpha_sink" not in view["kinds"]["metrics_sink"]


def test_load_plugins_selects_by_entry_point_name_and_reports_unknown_names(
    tmp_path: Path, two_marker_plugins: Path
) -> None:
    markers, env = _markers(tmp_path, "alpha-only")
    view = probe([two_marker_plugins], tmp_path, " alpha , nosuch,", **env)
    assert [p.name for p in markers.iterdir()] == ["alpha"]
    assert "alpha" in view["plugins"] and "beta" not in view["plugins"]
    assert "sqlite_state" in view["plugins"]  # defaults need not be listed
    [(_, error)] = [f for f in view["failures"] if f[0] == "nosuch"]
    assert "listed in FLUXON_LOAD_PLUGINS" in error and "no installed distribution" in error


def test_allowed_plugin_names_parsing() -> None:
    assert allowed_plugin_names({}) is None
    assert allowed_plugin_names({"FLUXON_LOAD_PLUGINS": ""}) == set()
    assert allowed_plugin_names({"FLUXON_LOAD_PLUGINS": " , "}) == set()
    assert allowed_plugin_names({"FLUXON_LOAD_PLUGINS": "a, b,,c "}) == {"a", "b", "c"}


# ---------------------------------------------------------------- broken plugins are isolated


@attrs.frozen
class _Broken:
    dist: Any
    expected_error: str


BROKEN_PLUGINS = [
    _Broken(
        fake_plugin("fluxon-fake-broken", "broken", import_error="needs libfrobnicate"),
        "ImportError: needs libfrobnicate",
    ),
    _Broken(
        fake_plugin(
            "fluxon-fake-typo",
            "typo",
            extra_source="""
            @hookimpl
            def fluxon_register_state_store(register):
                register("typo", object)
            """,
        ),
        "implements fluxon_register_state_store, which is not a Fluxon hook",
    ),
    _Broken(
        fake_plugin(
            "fluxon-fake-badargs",
            "badargs",
            extra_source="""
            @hookimpl
            def fluxon_register_caches(registry):
                pass
            """,
        ),
        "PluginValidationError",
    ),
    _Broken(
        # A third-party distribution reusing a default's entry-point name must not displace it.
        fake_plugin("fluxon-fake-impostor", "sqlite_state", import_error="the impostor was imported"),
        "entry point name 'sqlite_state' is used by fluxon 0.1.0 and by fluxon-fake-impostor 1.0",
    ),
]


def test_broken_plugins_are_reported_by_name_and_the_rest_keeps_working(tmp_path: Path) -> None:
    markers, env = _markers(tmp_path, "markers")
    site = make_site(
        tmp_path,
        *(b.dist for b in BROKEN_PLUGINS),
        fake_plugin("fluxon-fake-good", "good", sinks=["good_sink"]),
    )
    view = probe([site], tmp_path, None, **env)
    failures = view["failures"]
    for broken in BROKEN_PLUGINS:
        [name] = broken.dist.entry_points
        assert any(f[0] == name and broken.expected_error in f[1] for f in failures), (name, failures)
    assert {"broken", "typo", "badargs"}.isdisjoint(view["plugins"])
    assert view["plugins"]["sqlite_state"]["distribution"] == "fluxon"
    assert view["plugins"]["good"]["origin"] == "third-party"
    assert "good_sink" in view["kinds"]["metrics_sink"] and "sqlite" in view["kinds"]["state_store"]
    assert "sqlite_state" not in {p.name for p in markers.iterdir()}  # the impostor never ran


def test_selecting_a_kind_only_a_broken_plugin_would_provide_names_the_failure(tmp_path: Path) -> None:
    site = make_site(tmp_path, fake_plugin("fluxon-fake-broken", "broken", import_error="needs libfrobnicate"))
    proc = run_python(
        """
        import attrs, json
        from fluxon_core.config import BackendConfig, ConfigError, config_field, load_yaml_text

        @attrs.frozen
        class Host:
            transfer_state_store: BackendConfig = config_field(doc="d", backend="state_store")

        try:
            load_yaml_text(Host, "transfer_state_store: {kind: frobnicated}")
        except ConfigError as exc:
            print(json.dumps({"path": exc.path, "message": str(exc)}))
        """,
        [site],
        tmp_path,
    )
    result = json_output(proc)
    assert result["path"] == "transfer_state_store.kind"
    message = result["message"]
    assert "unknown state_store kind 'frobnicated'; available kinds: " in message
    assert "sqlite" in message
    assert "plugins that failed to load: broken (ImportError: needs libfrobnicate)" in message


def test_a_register_hook_that_raises_disables_the_whole_plugin(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        fake_plugin(
            "fluxon-fake-half",
            "half",
            sinks=["half_sink"],
            commands=["half-cmd"],
            raising_hook="fluxon_register_state_stores",
        ),
        fake_plugin("fluxon-fake-good", "good", sinks=["good_sink"]),
    )
    proc = run_python(
        """
        import json
        from fluxon_core import plugins
        from fluxon_core.cli import collect_commands

        manager = plugins.get_plugin_manager()
        print(json.dumps({
            "failures": [[f.name, f.error] for f in manager.failures],
            "plugins": manager.plugin_names(),
            "sinks": manager.backends().kinds("metrics_sink"),
            "commands": sorted(collect_commands()),
            "notified": manager.notify("fluxon_role_stopping", role="fs_agent", instance_key="k") == [],
        }))
        """,
        [site],
        tmp_path,
    )
    result = json_output(proc)
    assert ["half", "fluxon_register_state_stores raised RuntimeError: boom in fluxon_register_state_stores"] in result[
        "failures"
    ]
    # Nothing of a half-registered plugin is used: not the sink it registered first, not its command.
    assert "half" not in result["plugins"]
    assert "half_sink" not in result["sinks"] and "good_sink" in result["sinks"]
    assert "half-cmd" not in result["commands"] and "plugins" in result["commands"]
    assert result["notified"] is True


# ---------------------------------------------------------------- duplicates


def test_a_kind_registered_by_two_plugins_is_an_error_naming_both(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        fake_plugin("fluxon-fake-one", "one", sinks=["shared_sink", "one_sink"]),
        fake_plugin("fluxon-fake-two", "two", sinks=["shared_sink"]),
    )
    proc = run_python(
        """
        import attrs, json
        from fluxon_core.config import BackendConfig, ConfigError, config_field, load_config
        from fluxon_core.plugins import DuplicateKindError, get_backends

        @attrs.frozen
        class Host:
            metrics: BackendConfig = config_field(doc="d", backend="metrics_sink")

        out = {"kinds": get_backends().kinds("metrics_sink")}
        try:
            get_backends().create("metrics_sink", "shared_sink")
        except DuplicateKindError as exc:
            out["create"] = str(exc)
        try:
            load_config(Host, {"metrics": {"kind": "shared_sink"}})
        except ConfigError as exc:
            out["config"] = str(exc)
        out["other"] = type(get_backends().create("metrics_sink", "one_sink")).__name__
        print(json.dumps(out))
        """,
        [site],
        tmp_path,
    )
    result = json_output(proc)
    naming_both = "duplicate metrics_sink kind 'shared_sink': provided by plugin 'one' and by plugin 'two'"
    assert naming_both in result["create"]
    assert result["config"].startswith("metrics.kind is not usable: " + naming_both)
    assert "shared_sink" not in result["kinds"] and "one_sink" in result["kinds"]
    assert result["other"] == "Sink"


# ---------------------------------------------------------------- scanned once per process


def test_entry_points_are_scanned_once_per_process(tmp_path: Path) -> None:
    proc = run_python(
        """
        import json, time
        from fluxon_core import plugins

        before = plugins.entry_point_scans
        t0 = time.perf_counter()
        first = plugins.get_plugin_manager()
        t1 = time.perf_counter()
        second = plugins.get_plugin_manager()
        registry = plugins.get_backends()
        t2 = time.perf_counter()
        print(json.dumps({
            "before": before, "after": plugins.entry_point_scans, "same": first is second,
            "same_registry": registry is first.backends(),
            "first_ms": (t1 - t0) * 1e3, "second_ms": (t2 - t1) * 1e3,
        }))
        """,
        [],
        tmp_path,
    )
    result = json_output(proc)
    print(f"\nplugin manager: first load {result['first_ms']:.1f} ms, second call {result['second_ms']:.4f} ms")
    assert (result["before"], result["after"]) == (0, 1)
    assert result["same"] and result["same_registry"]
    assert result["second_ms"] < result["first_ms"]


# ---------------------------------------------------------------- the example third-party package


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # A real pip build and install of examples/plugins/fluxon-memstate (~4 s): once for the module.
    yield install_example_plugin(tmp_path_factory.mktemp("memstate"))


def test_example_plugin_installed_with_pip_is_selected_from_yaml(example_plugin: Path, tmp_path: Path) -> None:
    config = tmp_path / "jobs.yaml"
    config.write_text(
        "transfer_state_store:\n  kind: memory\n  memory:\n    space: jobs\n    key_prefix: /jobs/\n",
        encoding="utf-8",
    )
    proc = run_python(
        f"""
        import attrs, json
        from fluxon_core.config import BackendConfig, config_field, load_yaml_file
        from fluxon_core.plugins import get_plugin_manager
        from fluxon_core.protocols import StateStore

        @attrs.frozen
        class JobsConfig:
            transfer_state_store: BackendConfig = config_field(doc="job state.", backend="state_store")

        config = load_yaml_file(JobsConfig, {str(config)!r})
        store = config.transfer_state_store.create("state_store")
        store.batch_write([("job/1", b"queued"), ("job/2", b"queued")])
        swapped = store.compare_and_set("job/1", b"queued", b"running")
        info = {{p.name: p for p in get_plugin_manager().plugins()}}["memstate"]
        print(json.dumps({{
            "options": [type(config.transfer_state_store.options).__name__, config.transfer_state_store.options.key_prefix],
            "protocol": isinstance(store, StateStore),
            "swapped": swapped,
            "scan": [[k, v.decode()] for k, v in store.scan_prefix("job/")],
            "origin": [info.origin, info.distribution, info.version],
        }}))
        """,
        [example_plugin],
        tmp_path,
    )
    assert json_output(proc) == {
        "options": ["MemoryStateStoreConfig", "/jobs/"],
        "protocol": True,
        "swapped": True,
        "scan": [["job/1", "running"], ["job/2", "queued"]],
        "origin": ["third-party", "fluxon-memstate", "0.1.0"],
    }


def test_example_plugin_can_be_excluded(example_plugin: Path, tmp_path: Path) -> None:
    view = probe([example_plugin], tmp_path, "")
    assert "memstate" not in view["plugins"] and "memory" not in view["kinds"]["state_store"]
    view = probe([example_plugin], tmp_path, "memstate")
    assert view["plugins"]["memstate"]["origin"] == "third-party" and "memory" in view["kinds"]["state_store"]


def test_example_plugin_own_tests_pass(example_plugin: Path, tmp_path: Path) -> None:
    # The plugin author's recipe from docs/plugins.md, run as written (~2 s: a pytest child).
    from tests.support.plugin_packages import EXAMPLE_PLUGIN_DIR

    proc = run_python(
        f"""
        import sys, pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", {str(tmp_path)!r},
                              {str(EXAMPLE_PLUGIN_DIR / "tests")!r}]))
        """,
        [example_plugin],
        tmp_path,
        load_plugins="memstate",
        PYTHONDONTWRITEBYTECODE="1",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "13 passed" in proc.stdout  # 4 state-store and 9 access-store tests (access keys included)


# ---------------------------------------------------------------- registry and lifecycle API, in-process


@attrs.frozen
class _SinkOptions:
    flush_every: int = 10


class _Sink:
    def __init__(self, options: _SinkOptions | None) -> None:
        self.options = options

    def record(self, name: str, value: float, labels: dict[str, str] | None = None, kind: str = "gauge") -> None:
        pass

    def close(self) -> None:
        pass


class _SinkPlugin:
    @hookimpl
    def fluxon_register_metrics_sinks(self, register: Any) -> None:
        register("opts", _Sink, config_type=_SinkOptions)
        register("plain", _Sink)
        register("wrong_shape", lambda options: object())


def _manager_with(*plugins: tuple[str, object]) -> FluxonPluginManager:
    manager = FluxonPluginManager()  # private: the process-wide manager is left alone
    for name, plugin in plugins:
        manager.register(plugin, name=name)
    return manager


def test_create_parses_options_and_checks_the_protocol() -> None:
    registry = _manager_with(("sinks", _SinkPlugin())).backends()
    assert registry.create("metrics_sink", "opts").options == _SinkOptions()
    assert registry.create("metrics_sink", "opts", {"flush_every": 3}).options == _SinkOptions(3)
    assert registry.create("metrics_sink", "opts", _SinkOptions(5)).options == _SinkOptions(5)
    assert isinstance(registry.create("metrics_sink", "plain"), MetricsSink)
    with pytest.raises(ConfigTypeError, match=r"^metrics_sink\.opts\.flush_every must be an integer, got str 'x'"):
        registry.create("metrics_sink", "opts", {"flush_every": "x"})
    with pytest.raises(TypeError, match=r"metrics_sink\.plain takes no options"):
        registry.create("metrics_sink", "plain", {"a": 1})
    with pytest.raises(TypeError, match="takes _SinkOptions options, got int"):
        registry.create("metrics_sink", "opts", 7)
    with pytest.raises(
        PluginError,
        match="plugin 'sinks': metrics_sink kind 'wrong_shape' returned object, which does not implement MetricsSink",
    ):
        registry.create("metrics_sink", "wrong_shape")
    with pytest.raises(UnknownBackendError, match="unknown backend category 'sink'; categories: transport, cache"):
        registry.kinds("sink")
    with pytest.raises(
        UnknownBackendError, match=r"unknown metrics_sink kind 'nope'; available kinds: opts, plain, wrong_shape$"
    ):
        registry.entry("metrics_sink", "nope")


class _BadRegistration:
    def __init__(self, kind: Any, factory: Any = _Sink, config_type: Any = None) -> None:
        self.args = (kind, factory, config_type)

    @hookimpl
    def fluxon_register_metrics_sinks(self, register: Any) -> None:
        register(*self.args)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("",), "registered metrics_sink kind ''; a kind is a name of letters"),
        (("kind",), "registered metrics_sink kind 'kind'"),
        (("has space",), "registered metrics_sink kind 'has space'"),
        (("ok", "not callable"), "with a non-callable factory"),
        (("ok", _Sink, dict), "with a config_type that is not an attrs class"),
    ],
)
def test_bad_registrations_disable_the_plugin(args: tuple[Any, ...], expected: str) -> None:
    manager = _manager_with(("bad", _BadRegistration(*args)), ("sinks", _SinkPlugin()))
    assert "plain" in manager.backends().kinds("metrics_sink")
    [failure] = manager.failures
    assert failure.name == "bad" and failure.error.startswith("fluxon_register_metrics_sinks raised PluginError: ")
    assert expected in failure.error
    assert "bad" not in manager.plugin_names()


def test_duplicate_kinds_in_process_name_every_provider() -> None:
    manager = _manager_with(("first", _SinkPlugin()), ("second", _SinkPlugin()), ("third", _SinkPlugin()))
    registry = manager.backends()
    assert registry.kinds("metrics_sink") == []
    with pytest.raises(
        DuplicateKindError, match="provided by plugin 'first' and by plugin 'second' and by plugin 'third'"
    ):
        registry.entry("metrics_sink", "plain")
    assert [c.plugins for c in registry.conflicts()] == [("first", "second", "third")] * 3


def test_registering_a_plugin_rebuilds_the_registry() -> None:
    manager = _manager_with()
    assert manager.backends().kinds("metrics_sink") == []
    manager.register(_SinkPlugin(), name="late")
    assert "plain" in manager.backends().kinds("metrics_sink")
    with pytest.raises(ValueError, match="already registered"):
        manager.register(_SinkPlugin(), name="late")


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    @hookimpl
    def fluxon_role_started(self, role: str, instance_key: str) -> None:  # a subset of the spec's arguments
        self.calls.append(("started", role, instance_key))

    @hookimpl
    def fluxon_role_stopping(self, role: str, instance_key: str) -> None:
        self.calls.append(("stopping", role, instance_key))


class _Crasher:
    @hookimpl
    def fluxon_role_started(self, role: str, instance_key: str, config: Any) -> None:
        raise RuntimeError(f"cannot start with {config}")


def test_lifecycle_notifications_reach_every_plugin_even_when_one_raises() -> None:
    recorder = _Recorder()
    # Registered first so pluggy calls it last: the crash happens before it is reached.
    manager = _manager_with(("recorder", recorder), ("crasher", _Crasher()))
    problems = manager.notify("fluxon_role_started", role="fs_agent", instance_key="a1", config={"x": 1})
    assert [(p.name, p.error) for p in problems] == [
        ("crasher", "fluxon_role_started raised RuntimeError: cannot start with {'x': 1}")
    ]
    assert manager.notify("fluxon_role_stopping", role="fs_agent", instance_key="a1") == []
    assert recorder.calls == [("started", "fs_agent", "a1"), ("stopping", "fs_agent", "a1")]
    with pytest.raises(TypeError, match="takes the arguments"):
        manager.notify("fluxon_role_stopping", role="fs_agent")
    with pytest.raises(ValueError, match="'fluxon_role_paused' is not a Fluxon hook"):
        manager.notify("fluxon_role_paused", role="x")


def test_plugin_failure_hint_lists_every_failure() -> None:
    manager = _manager_with(("bad", _BadRegistration("")))
    manager.backends()
    with pytest.raises(UnknownBackendError) as caught:
        manager.backends().entry("metrics_sink", "x")
    assert "available kinds: none; plugins that failed to load: bad (fluxon_register_metrics_sinks raised" in str(
        caught.value
    )
