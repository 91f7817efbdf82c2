"""Fixtures shared across test areas. Keep this small: area-specific fixtures live in their modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.etcd_server import EtcdServer


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One real etcd for the whole session (``.endpoint``, ``.stop()``, ``.start()``, ``.stopped()``).

    Tests that stop it must start it again (``with etcd_server.stopped(): ...`` does); tests share it,
    so each uses its own key prefix.
    """
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
