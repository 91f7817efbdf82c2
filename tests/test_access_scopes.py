"""Scope decisions, table-driven: modes, whole-component prefixes, other exports, managers, listings."""

from __future__ import annotations

import pytest

from fluxon_core.access.records import ScopeGrant, ScopeMode, normalize_prefix
from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.auth.scopes import ListingVisibility, PathAccess, ScopeSet, split_export_path

RO, RW = ScopeMode.READ_ONLY, ScopeMode.READ_WRITE
GRANTS = [
    ScopeGrant("demo", "data", RO),
    ScopeGrant("demo", "data/out", RW),
    ScopeGrant("demo", "team/a/b", RO),
    ScopeGrant("logs", "", RW),
]
USER = ScopeSet(GRANTS)
MANAGER = ScopeSet([], unrestricted=True)

NONE, TRAVERSE, READ, READ_WRITE = PathAccess.NONE, PathAccess.TRAVERSE, PathAccess.READ, PathAccess.READ_WRITE


@pytest.mark.parametrize(
    ("export", "path", "expected"),
    [
        ("demo", "data", READ),
        ("demo", "data/", READ),
        ("demo", "./data//x", READ),
        ("demo", "data/x/y.bin", READ),
        ("demo", "database", NONE),  # prefix matches whole components, not characters
        ("demo", "data.bak", NONE),
        ("demo", "data/out", READ_WRITE),
        ("demo", "data/out/deep/file", READ_WRITE),
        ("demo", "data/outside", READ),  # inside data (ro), not inside data/out
        ("demo", "", TRAVERSE),
        ("demo", ".", TRAVERSE),
        ("demo", "team", TRAVERSE),
        ("demo", "team/a", TRAVERSE),
        ("demo", "team/a/b/c", READ),
        ("demo", "team/ab", NONE),
        ("demo", "other", NONE),
        ("logs", "", READ_WRITE),
        ("logs", "anything/at/all", READ_WRITE),
        ("other", "", NONE),  # same prefixes, another export
        ("other", "data", NONE),
        ("Demo", "data", NONE),  # export names are exact
    ],
)
def test_user_access(export: str, path: str, expected: PathAccess) -> None:
    assert USER.access(export, path) is expected


@pytest.mark.parametrize("export", ["demo", "logs", "registered-later", "x"])
@pytest.mark.parametrize("path", ["", "data", "database", "a/b/c"])
def test_managers_reach_every_export_without_grants(export: str, path: str) -> None:
    assert MANAGER.access(export, path) is READ_WRITE
    assert MANAGER.listing(export, path) == ListingVisibility(everything=True)


def test_read_only_grant_forbids_writes_but_a_wider_read_write_grant_wins() -> None:
    scopes = ScopeSet([ScopeGrant("e", "a", RO), ScopeGrant("e", "", RW)])
    assert scopes.access("e", "a/file") is READ_WRITE
    assert ScopeSet([ScopeGrant("e", "a", RO)]).access("e", "a/file") is READ


@pytest.mark.parametrize(
    ("export", "dir_path", "visible", "hidden"),
    [
        ("demo", "", {"data", "team"}, {"database", "other", "logs"}),
        ("demo", "team", {"a"}, {"b", "c"}),
        ("demo", "team/a", {"b"}, {"a", "bb"}),
        ("demo", "data", {"anything", "out"}, set()),
        ("logs", "", {"anything"}, set()),
    ],
)
def test_listing_visibility(export: str, dir_path: str, visible: set[str], hidden: set[str]) -> None:
    listing = USER.listing(export, dir_path)
    assert listing is not None
    assert all(listing.shows(name) for name in visible)
    assert not any(listing.shows(name) for name in hidden)


@pytest.mark.parametrize(("export", "dir_path"), [("demo", "other"), ("demo", "team/ab"), ("other", "")])
def test_listing_out_of_reach_is_none(export: str, dir_path: str) -> None:
    assert USER.listing(export, dir_path) is None


@pytest.mark.parametrize(
    ("path", "components"),
    [("", ()), (".", ()), ("a//b/./c/", ("a", "b", "c")), ("a b", ("a b",))],
)
def test_split_export_path_follows_the_agent_rules(path: str, components: tuple[str, ...]) -> None:
    assert split_export_path(path) == components


@pytest.mark.parametrize("path", ["..", "a/../b", "a/..", "/etc", "/"])
def test_paths_that_could_escape_are_refused_for_everyone(path: str) -> None:
    for scopes in (USER, MANAGER):
        with pytest.raises(PermissionError):
            scopes.access("logs", path)
    with pytest.raises(ValueError):
        USER.access("logs", "a\x00b")


def test_normalize_prefix_accepts_surrounding_slashes_only() -> None:
    assert normalize_prefix("/data//x/") == "data/x"
    assert normalize_prefix("/") == ""
    for bad in ("a/../b", "..", "a\x00"):
        with pytest.raises(InvalidArgumentError, match="not an export-relative directory"):
            normalize_prefix(bad)
