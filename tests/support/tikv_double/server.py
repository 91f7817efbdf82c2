"""The TiKV test double's server: PD and TiKV gRPC services on one loopback port.

TEST DOUBLE SUPPORT — see the package docstring for what is and is not modelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

from tests.support.tikv_double.mvcc import MvccStore
from tests.support.tikv_double.services import CallLog, DoubleHandler, PdService, TikvService, Topology, Tso

# Each connected client keeps one TSO stream open, and a sync gRPC server spends a thread per open
# stream; the conformance suite runs a handful of clients at once, so leave plenty of headroom.
MAX_SERVER_THREADS = 64


class TikvDouble:
    """A stand-in PD + TiKV for ``tikv_client`` (``.pd_endpoint``, ``.log``, ``.mvcc``).

    ``start()`` binds a free port on first use and keeps it across ``stop()``/``start()``, and the
    data lives in :attr:`mvcc` across restarts, so tests can take the "cluster" away and bring it back.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.mvcc = MvccStore()
        self.log = CallLog()
        self._tso = Tso()
        self._server: grpc.Server | None = None

    @property
    def pd_endpoint(self) -> str:
        """``host:port`` to pass as ``pd_endpoints=[...]``."""
        if not self.port:
            raise RuntimeError("the TiKV test double has not been started")
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Serve PD and TiKV on the port (a free one picked on the first start)."""
        if self._server is not None:
            return
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_SERVER_THREADS, thread_name_prefix="tikv-double"),
            options=[("grpc.so_reuseport", 0)],
        )
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise RuntimeError(f"the TiKV test double could not bind {self.host}:{self.port}")
        self.port = bound
        topology = Topology(address=f"{self.host}:{bound}")
        server.add_generic_rpc_handlers(
            [DoubleHandler(PdService(topology, self._tso, self.log), TikvService(self.mvcc, self.log), self.log)]
        )
        server.start()
        self._server = server

    def stop(self) -> None:
        """Stop serving (open streams are cut); the data stays in :attr:`mvcc`."""
        if self._server is None:
            return
        self._server.stop(grace=None).wait()
        self._server = None

    def tso_now(self) -> int:
        """A fresh timestamp from the double's PD clock (for tests that write into :attr:`mvcc`)."""
        return self._tso.now()

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop for the duration of the block, then serve again on the same port."""
        self.stop()
        try:
            yield
        finally:
            self.start()
