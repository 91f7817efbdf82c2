"""Serving the panel: uvicorn in a background thread of the fs master, with a clean stop."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.log_setup import get_logger
from fluxon_fs.config import MasterPanelConfig
from fluxon_fs.fs_master.panel.app import create_panel_app
from fluxon_fs.fs_master.panel.backend import PanelBackend
from fluxon_fs.fs_master.panel.settings import PanelSettings
from fluxon_fs.fs_master.panel.web import Panel

log = get_logger("fluxon.fs.panel")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def split_listen_addr(listen_addr: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → (host, port); port 0 picks a free port."""
    host, sep, port_text = listen_addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidArgumentError(f"listen_addr must be host:port, got {listen_addr!r}")
    return host, int(port_text)


def bind_listen_socket(listen_addr: str, *, what: str = "panel") -> socket.socket:
    """A listening TCP socket on ``listen_addr``; a clear error, naming ``what`` binds, when it cannot be bound."""
    host, port = split_listen_addr(listen_addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise InvalidArgumentError(f"{what} cannot bind listen_addr {listen_addr!r}: {exc.strerror or exc}") from exc
    # Accepted connections inherit this. uvicorn writes a response's head and body separately, and
    # with Nagle on, every keep-alive request would wait ~40 ms for the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def socket_addr(sock: socket.socket) -> str:
    """``host:port`` (``[v6]:port``) a socket is bound to."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


class PanelServer:
    """An ASGI app served by uvicorn in a background thread, on an already bound socket.

    :meth:`start` returns once uvicorn serves; :meth:`stop` asks it to finish open requests (at
    most ``STOP_TIMEOUT_S``), then forces it down, and closes the socket. ``stop`` is idempotent.
    """

    def __init__(self, app: ASGIApp, sock: socket.socket, *, name: str = "panel") -> None:
        self._app = app
        self._name = name
        self._socket = sock
        self.bound_addr = socket_addr(sock)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(STOP_TIMEOUT_S),
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fs-{name}", daemon=True
        )
        self._stopped = False

    @property
    def url(self) -> str:
        """``http://<bound address>``: where this process serves (not necessarily the public URL)."""
        return f"http://{self.bound_addr}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> PanelServer:
        """Start serving; raises when uvicorn did not come up within ``timeout_s``."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"{self._name} server on {self.bound_addr} exited during startup; see the log")
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"{self._name} server on {self.bound_addr} did not start within {timeout_s}s")
            self._thread.join(0.01)
        log.info("%s serving on %s", self._name, self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._stopped:
            return
        self._stopped = True
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S + 1)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT_S)
        self._socket.close()
        if isinstance(self._app, Starlette) and isinstance(getattr(self._app.state, "panel", None), Panel):
            self._app.state.panel.close()  # its password-check threads


def start_panel(backend: PanelBackend, config: MasterPanelConfig) -> PanelServer:
    """Bind ``config.listen_addr``, build the panel for ``backend`` and serve it.

    Without ``public_base_url``, the links the UI shows use the bound address (so port 0 works).
    """
    sock = bind_listen_socket(config.listen_addr)
    try:
        settings = PanelSettings.from_config(config, bound_addr=socket_addr(sock))
        server = PanelServer(create_panel_app(backend, settings), sock)
    except BaseException:
        sock.close()
        raise
    return server.start()
