"""A tiny standalone ``/metrics`` HTTP endpoint for roles without the panel (stdlib ``http.server``)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fluxon_core.log_setup import get_logger
from fluxon_core.metrics_exposition import CONTENT_TYPE, render_prometheus_text

log = get_logger("fluxon.metrics.prometheus")

METRICS_PATH = "/metrics"


class _MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsHttpServer

    def do_GET(self) -> None:
        self._respond(with_body=True)

    def do_HEAD(self) -> None:
        self._respond(with_body=False)

    def _respond(self, with_body: bool) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self._send(404, b"not found; metrics are at /metrics\n", "text/plain; charset=utf-8", with_body)
            return
        try:
            body = self.server.render().encode("utf-8")
        except Exception:
            log.exception("rendering /metrics failed")
            self._send(500, b"rendering metrics failed; see the role log\n", "text/plain; charset=utf-8", with_body)
            return
        self._send(200, body, CONTENT_TYPE, with_body)

    def _send(self, status: int, body: bytes, content_type: str, with_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics endpoint: " + format, *args)


class MetricsHttpServer(ThreadingHTTPServer):
    """An HTTP server answering ``GET /metrics`` from a daemon thread; ``close()`` stops it."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], render: Callable[[], str]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _MetricsHandler)
        self.render = render
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="fluxon-metrics-http", daemon=True
        )
        self._closed = False

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join()
        self.server_close()


def split_listen_addr(listen_addr: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    host, sep, port_text = listen_addr.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"listen address {listen_addr!r} must be host:port")
    return host.strip("[]"), int(port_text)


def serve_metrics(host: str, port: int, render: Callable[[], str] | None = None) -> tuple[MetricsHttpServer, str]:
    """Serve ``GET /metrics`` on ``host:port`` (port 0 picks one) from a daemon thread.

    ``render`` produces the body (default: the process-wide registry as Prometheus text). Returns the
    running server (stop it with ``close()``) and the URL of its endpoint.
    """
    server = MetricsHttpServer((host, port), render or render_prometheus_text)
    server.start()
    bound_port = server.server_address[1]
    url_host = f"[{host}]" if ":" in host else host
    return server, f"http://{url_host}:{bound_port}{METRICS_PATH}"
