"""The strict config loader: every kind of bad input is refused with the full dotted path.

Config classes are small attrs classes defined here, declared the way Fluxon's own are. Backend
blocks select kinds from a test plugin registered on the process-wide manager for this module.
"""

from __future__ import annotations

import enum
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NewType

import attrs
import pytest

from fluxon_core.config import (
    BackendConfig,
    ByteSize,
    ConfigError,
    ConfigTypeError,
    config_field,
    dump_config,
    load_config,
    load_yaml_file,
    load_yaml_text,
    parse_yaml_text,
)
from fluxon_core.config.fields import absolute_path, each, identifier, port_number, positive
from fluxon_core.hookspecs import hookimpl
from fluxon_core.plugins import get_plugin_manager

Port = NewType("Port", int)


class Mode(enum.Enum):
    """Values equal lower-cased names, as in Fluxon's own enums."""

    READ_THROUGH = "read_through"
    DISABLED = "disabled"


class Level(enum.Enum):
    """Values that differ from the names."""

    low = 1
    high = 2


@attrs.frozen
class Rule:
    dir_abs: str = config_field(doc="directory.", check=absolute_path)
    max_bytes: ByteSize = config_field(doc="size cap.", default=ByteSize(1024), check=positive)


@attrs.frozen
class Export:
    cache_max_bytes: ByteSize = config_field(doc="budget.", default=ByteSize(1 << 20), check=positive)
    nodes: list[str] | None = config_field(doc="nodes.", default=None, check=each(identifier))


@attrs.frozen
class Limits:
    workers: int = config_field(doc="workers.", default=2, check=positive)
    ratio: float = config_field(doc="ratio.", default=0.5)


@attrs.frozen
class Service:
    name: str = config_field(doc="service name.")
    enabled: bool = config_field(doc="on/off.", default=True)
    mode: Mode = config_field(doc="mode.", default=Mode.READ_THROUGH)
    level: Level = config_field(doc="level.", default=Level.low)
    flavour: Literal["plain", "fancy"] = config_field(doc="flavour.", default="plain")
    port: Port = config_field(doc="port.", default=Port(8080), check=port_number)
    limits: Limits = config_field(doc="limits.", factory=Limits)
    optional_limits: Limits | None = config_field(doc="optional limits.", default=None)
    rules: list[Rule] = config_field(doc="rules.", factory=list)
    exports: dict[str, Export] = config_field(doc="exports.", factory=dict)
    tags: tuple[str, ...] = config_field(doc="tags.", default=())
    aliases: Sequence[str] = config_field(doc="aliases.", default=())
    endpoint: tuple[str, int] | None = config_field(doc="host and port.", default=None)
    sizes: int | list[int] = config_field(doc="one size or several.", default=0)
    extra: Any = config_field(doc="free-form.", default=None)
    store: BackendConfig | None = config_field(doc="state store.", default=None, backend="state_store")

    def __config_validate__(self) -> list[tuple[str, str]]:
        if self.flavour == "fancy" and not self.enabled:
            return [("flavour", "cannot be 'fancy' while enabled is false")]
        return []


@attrs.frozen
class Root:
    service: Service = config_field(doc="the service.")


# ---------------------------------------------------------------- a backend kind owned by this module


@attrs.frozen
class StoreOptions:
    space: str = config_field(doc="space.", default="s", check=identifier)
    capacity: int = config_field(doc="capacity.", default=10, check=positive)


class _StorePlugin:
    @hookimpl
    def fluxon_register_state_stores(self, register: Any) -> None:
        register("teststore", lambda options: options, config_type=StoreOptions)
        register("bare", lambda options: options)


@pytest.fixture(scope="module", autouse=True)
def test_store_plugin() -> Iterator[None]:
    manager = get_plugin_manager()
    manager.register(_StorePlugin(), name="test_config_loader_store")
    yield
    manager.unregister("test_config_loader_store")


def load(data: Any) -> Root:
    return load_config(Root, data)


def service(**fields: Any) -> dict[str, Any]:
    return {"service": {"name": "svc", **fields}}


# ---------------------------------------------------------------- bad input, one case per kind


BAD_INPUT = [
    pytest.param(
        {"service": {"name": "svc", "bogus": 1}},
        "service.bogus",
        "is not a known field; expected one of: aliases, enabled, endpoint,",
        id="unknown-key",
    ),
    pytest.param(
        service(limit={}), "service.limit", "is not a known field; did you mean 'limits'? expected", id="typo-key"
    ),
    pytest.param(
        service(limits={"workers": "4"}),
        "service.limits.workers",
        "must be an integer, got str '4'",
        id="str-for-int",
    ),
    pytest.param({"service": {"name": 5}}, "service.name", "must be a string, got int 5", id="int-for-str"),
    pytest.param(service(limits=[1]), "service.limits", "must be a mapping, got list [1]", id="list-for-mapping"),
    pytest.param(
        service(rules={"a": 1}), "service.rules", "must be list of mapping, got mapping {'a': 1}", id="mapping-for-list"
    ),
    pytest.param(
        service(limits={"workers": True}),
        "service.limits.workers",
        "must be an integer, got bool True",
        id="bool-for-int",
    ),
    pytest.param(
        service(limits={"ratio": False}),
        "service.limits.ratio",
        "must be a number, got bool False",
        id="bool-for-float",
    ),
    pytest.param(
        service(enabled="yes"), "service.enabled", "must be a boolean (true/false), got str 'yes'", id="str-for-bool"
    ),
    pytest.param({"service": {}}, "service.name", "is required (string)", id="missing-required"),
    pytest.param({}, "service", "is required (mapping)", id="missing-section"),
    pytest.param(service(limits={"workers": 0}), "service.limits.workers", "must be > 0", id="check-positive"),
    pytest.param(
        service(rules=[{"dir_abs": "/a"}, {"dir_abs": "/b"}, {"dir_abs": "relative/dir"}]),
        "service.rules[2].dir_abs",
        "must be an absolute path, got 'relative/dir'",
        id="relative-path-in-list",
    ),
    pytest.param(
        service(mode="turbo"),
        "service.mode",
        "must be one of 'read_through', 'disabled', got str 'turbo'",
        id="bad-enum",
    ),
    pytest.param(
        service(level="medium"),
        "service.level",
        "must be one of 1, 2 (or by name: low, high), got str 'medium'",
        id="bad-enum-by-name",
    ),
    pytest.param(
        service(level=True),
        "service.level",
        "must be one of 1, 2 (or by name: low, high), got bool True",
        id="bool-is-not-enum-value-1",
    ),
    pytest.param(
        service(flavour="spicy"),
        "service.flavour",
        "must be one of 'plain', 'fancy', got str 'spicy'",
        id="bad-literal",
    ),
    pytest.param(
        service(exports={"demo": {"cache_max_bytes": "12 parsecs"}}),
        "service.exports['demo'].cache_max_bytes",
        "must be a byte size like 1048576, '512MiB' or '1GiB', got '12 parsecs'",
        id="bad-byte-size",
    ),
    pytest.param(
        service(exports={"demo": {"cache_max_bytes": "0.5"}}),
        "service.exports['demo'].cache_max_bytes",
        "must be a whole number of bytes",
        id="fractional-bytes",
    ),
    pytest.param(
        service(exports={"demo": {"cache_max_bytes": 0}}),
        "service.exports['demo'].cache_max_bytes",
        "must be > 0",
        id="dict-key-path",
    ),
    pytest.param(
        service(exports={"demo": {"nodes": ["n1", "bad name"]}}),
        "service.exports['demo'].nodes[1]",
        "must be a name of letters, digits",
        id="element-check-path",
    ),
    pytest.param(
        service(exports={7: {}}),
        "service.exports[7]",
        "is not a valid key: must be a string, got int 7",
        id="int-dict-key",
    ),
    pytest.param({"service": {"name": None}}, "service.name", "is null; expected string", id="null-for-required"),
    pytest.param(service(limits=None), "service.limits", "is null; expected mapping", id="null-for-defaulted"),
    pytest.param(
        service(optional_limits={"workers": -1}), "service.optional_limits.workers", "must be > 0", id="optional-attrs"
    ),
    pytest.param(service(port=70000), "service.port", "must be a port number 0..65535, got 70000", id="newtype-check"),
    pytest.param(service(port="80"), "service.port", "must be an integer, got str '80'", id="newtype-type"),
    pytest.param(service(tags="a,b"), "service.tags", "must be list of string, got str 'a,b'", id="str-for-tuple"),
    pytest.param(service(aliases=["a", 2]), "service.aliases[1]", "must be a string, got int 2", id="sequence-item"),
    pytest.param(
        service(endpoint=["host"]),
        "service.endpoint",
        "must be list of exactly 2 items (string, integer), got 1 items",
        id="fixed-tuple-length",
    ),
    pytest.param(service(endpoint=["host", "80"]), "service.endpoint[1]", "must be an integer", id="fixed-tuple-item"),
    pytest.param(service(sizes=[1, "x"]), "service.sizes[1]", "must be an integer, got str 'x'", id="union-deep-error"),
    pytest.param(
        service(sizes="x"), "service.sizes", "must be integer or list of integer, got str 'x'", id="union-no-match"
    ),
    pytest.param(
        service(flavour="fancy", enabled=False),
        "service.flavour",
        "cannot be 'fancy' while enabled is false",
        id="cross-field-validate",
    ),
    pytest.param(
        service(store={"kind": "nosuch"}),
        "service.store.kind",
        "is not usable: unknown state_store kind 'nosuch'; available kinds: ",
        id="unknown-backend-kind",
    ),
    pytest.param(
        service(store={}), "service.store.kind", "is required (the state_store kind to use)", id="backend-no-kind"
    ),
    pytest.param(
        service(store={"kind": 3}), "service.store.kind", "must be a string, got int 3", id="backend-kind-type"
    ),
    pytest.param(
        service(store={"kind": "teststore", "teststore": {}, "sqlite": {}}),
        "service.store.sqlite",
        "is not a known field; a state_store block holds 'kind' and an options block named 'teststore'",
        id="extra-key-in-backend-block",
    ),
    pytest.param(
        service(store={"kind": "teststore", "teststore": {"capacity": 0}}),
        "service.store.teststore.capacity",
        "must be > 0",
        id="backend-option-check",
    ),
    pytest.param(
        service(store={"kind": "teststore", "teststore": {"spcae": "x"}}),
        "service.store.teststore.spcae",
        "is not a known field; did you mean 'space'?",
        id="backend-option-unknown",
    ),
    pytest.param(
        service(store={"kind": "teststore", "teststore": ["x"]}),
        "service.store.teststore",
        "must be a mapping, got list ['x']",
        id="backend-options-not-mapping",
    ),
    pytest.param(
        service(store={"kind": "bare", "bare": {"a": 1}}),
        "service.store.bare",
        "must be absent: state_store kind 'bare' takes no options",
        id="options-for-optionless-kind",
    ),
    pytest.param(["service"], "<root>", "must be a mapping, got list ['service']", id="root-not-mapping"),
]


@pytest.mark.parametrize(("data", "path", "expectation"), BAD_INPUT)
def test_bad_input_names_the_full_path(data: Any, path: str, expectation: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(data)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path} {expectation}"), str(caught.value)


def test_the_unknown_kind_error_lists_the_available_kinds() -> None:
    with pytest.raises(ConfigError) as caught:
        load(service(store={"kind": "nosuch"}))
    available = str(caught.value).split("available kinds: ", 1)[1]
    assert "teststore" in available and "bare" in available


def test_type_errors_are_also_type_errors() -> None:
    with pytest.raises(TypeError):
        load(service(limits={"workers": "4"}))
    with pytest.raises(ConfigTypeError):
        load({"service": {"name": None}})


# ---------------------------------------------------------------- YAML text and files


def test_invalid_yaml_syntax() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^<root> is not valid YAML at line 3, column 1: expected ',' or '\]', but got '<stream end>' \(while parsing a flow sequence at line 2, column 9\)$",
    ):
        load_yaml_text(Root, "service:\n  name: [unclosed\n")


def test_invalid_yaml_in_a_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("service: {name: svc\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_yaml_file(Root, config)
    assert caught.value.source == str(config)
    assert str(caught.value).startswith("<root> is not valid YAML")
    assert str(caught.value).endswith(f"(in {config})")


def test_a_nul_in_a_yaml_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "nul.yaml"
    config.write_bytes(b"service:\n  name: sv\x00c\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml_file(Root, config)
    assert caught.value.source == str(config)
    assert str(caught.value) == (
        f"<root> is not valid YAML at line 2, column 11: contains the character NUL, which YAML does not allow "
        f"(in {config})"
    )
    with pytest.raises(ConfigError, match=r"line 1, column 4: contains the character U\+0007"):
        load_yaml_text(Root, "a: \x07")
    config.write_bytes(b"service:\n  name: svc\n")  # the same file without the NUL loads
    assert load_yaml_file(Root, config).service.name == "svc"


def test_a_bad_value_in_a_file_names_the_path_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "service.yaml"
    config.write_text("service:\n  name: svc\n  limits:\n    workers: -3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_yaml_file(Root, config)
    assert str(caught.value) == f"service.limits.workers must be > 0 (in {config})"


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match=r"absent\.yaml does not exist; expected a YAML config file"):
        load_yaml_file(Root, missing)
    with pytest.raises(ConfigError, match="is a directory; expected a YAML config file"):
        load_yaml_file(Root, tmp_path)


def test_duplicate_yaml_keys_are_refused_with_both_lines() -> None:
    text = "service:\n  name: one\n  limits:\n    workers: 1\n    workers: 2\n"
    with pytest.raises(ConfigError) as caught:
        load_yaml_text(Root, text)
    assert str(caught.value) == "service.limits.workers is given twice (lines 4 and 5)"


def test_yaml_anchors_and_merge_keys_are_not_mistaken_for_duplicates() -> None:
    text = """
    base: &base {workers: 3, ratio: 0.25}
    service:
      name: svc
      limits:
        <<: *base
        workers: 4
      optional_limits: *base
    """
    data = parse_yaml_text(text)
    del data["base"]
    root = load(data)
    assert root.service.limits == Limits(workers=4, ratio=0.25)
    assert root.service.optional_limits == Limits(workers=3, ratio=0.25)


def test_empty_yaml_means_an_empty_mapping() -> None:
    with pytest.raises(ConfigError, match=r"^service is required"):
        load_yaml_text(Root, "# nothing here\n")


# ---------------------------------------------------------------- what good input becomes


def test_good_input_is_converted_and_round_trips() -> None:
    text = """
    service:
      name: svc
      mode: DISABLED          # by name, any case
      level: high
      port: 9000
      limits: {workers: 4, ratio: 1}
      rules:
        - {dir_abs: /data, max_bytes: 1.5KiB}
      exports:
        demo: {cache_max_bytes: 512MiB, nodes: [n1, n-2]}
      tags: [a, b]
      aliases: [x]
      endpoint: [localhost, 80]
      sizes: [1, 2]
      extra: {anything: [1, 2]}
      store: {kind: teststore, teststore: {space: jobs}}
    """
    root = load_yaml_text(Root, text)
    svc = root.service
    assert svc.mode is Mode.DISABLED and svc.level is Level.high
    assert svc.limits == Limits(4, 1.0) and isinstance(svc.limits.ratio, float)
    assert svc.rules == [Rule("/data", ByteSize(1536))]
    assert svc.exports == {"demo": Export(ByteSize(512 << 20), ["n1", "n-2"])}
    assert svc.tags == ("a", "b") and svc.aliases == ("x",) and svc.endpoint == ("localhost", 80)
    assert svc.sizes == [1, 2] and svc.extra == {"anything": [1, 2]}
    assert svc.store == BackendConfig("teststore", StoreOptions(space="jobs"))
    assert load(dump_config(root)) == root


def test_enums_match_values_by_type_and_names_in_any_case() -> None:
    assert load(service(level=2)).service.level is Level.high
    assert load(service(level="HIGH")).service.level is Level.high
    assert load(service(mode="read_through")).service.mode is Mode.READ_THROUGH
    assert load(service(mode="Read_Through")).service.mode is Mode.READ_THROUGH


def test_backend_blocks_without_options_use_the_defaults() -> None:
    assert load(service(store={"kind": "teststore"})).service.store == BackendConfig("teststore", StoreOptions())
    assert load(service(store={"kind": "teststore", "teststore": None})).service.store.options == StoreOptions()
    assert load(service(store={"kind": "bare"})).service.store == BackendConfig("bare", None)


def test_defaults_apply_and_already_built_objects_pass_through() -> None:
    svc = load(service()).service
    assert (svc.enabled, svc.mode, svc.port, svc.limits, svc.rules, svc.exports) == (
        True,
        Mode.READ_THROUGH,
        8080,
        Limits(),
        [],
        {},
    )
    assert load({"service": svc}).service is svc


def test_config_errors_survive_pickling() -> None:
    error = ConfigTypeError("a.b", "must be an integer, got str 'x'", "/etc/f.yaml")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.path, copy.expectation, copy.source, str(copy)) == (
        ConfigTypeError,
        "a.b",
        "must be an integer, got str 'x'",
        "/etc/f.yaml",
        str(error),
    )


def test_an_annotation_that_does_not_resolve_is_a_clear_error() -> None:
    @attrs.frozen
    class Local:
        inner: LocalInner = config_field(doc="x.")  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ConfigTypeError, match=r"^top cannot be loaded: an annotation of .*Local does not resolve"):
        load_config(Local, {}, "top")


def test_config_field_refuses_mistakes_at_class_definition() -> None:
    with pytest.raises(TypeError, match="either default= or factory="):
        config_field(doc="x", default=1, factory=int)
    with pytest.raises(TypeError, match="is mutable; use factory="):
        config_field(doc="x", default=[])
    with pytest.raises(ValueError, match="backend='state' is not a backend category"):
        config_field(doc="x", backend="state")
