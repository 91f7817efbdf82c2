"""fsspec's own abstract test suite (copy, get, put, open, pipe) on ``fluxon://``, served by a real agent.

The classes below are fsspec's, unchanged; only the fixtures that say which filesystem to test and
where are ours: every test works under a fresh directory of export ``demo``.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

from tests.support.fsspec_e2e import fsspec_options
from tests.support.mount_e2e import MountE2E, mount_e2e_fixture

e2e = mount_e2e_fixture()


@pytest.fixture(scope="module")
def fluxon_fs(e2e: MountE2E) -> Iterator[Any]:
    fs = fsspec.filesystem("fluxon", **fsspec_options(e2e))
    yield fs
    fs.close()


class FluxonFixtures(AbstractFixtures):
    """Where fsspec's abstract tests run: a fresh directory of ``fluxon://demo`` per test."""

    @pytest.fixture
    def fs(self, fluxon_fs: Any) -> Any:
        return fluxon_fs

    @pytest.fixture
    def fs_join(self) -> Any:
        return posixpath.join

    @pytest.fixture
    def fs_path(self, fluxon_fs: Any) -> Iterator[str]:
        path = f"demo/abstract-{uuid.uuid4().hex[:10]}"
        fluxon_fs.mkdir(path)
        yield path
        fluxon_fs.rm(path, recursive=True)


class TestFluxonCopy(AbstractCopyTests, FluxonFixtures):
    pass


class TestFluxonGet(AbstractGetTests, FluxonFixtures):
    pass


class TestFluxonPut(AbstractPutTests, FluxonFixtures):
    pass


class TestFluxonOpen(AbstractOpenTests, FluxonFixtures):
    pass


class TestFluxonPipe(AbstractPipeTests, FluxonFixtures):
    pass
