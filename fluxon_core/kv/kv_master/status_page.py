"""The kv master's read-only status page (``master_ui.http_listen_addr``): ``GET /`` as text, ``/status.json``.

It shows what ``fluxon status`` shows, to anyone who can reach the address: bind it to an address
only operators reach. Nothing on it changes the cluster.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fluxon_core.addresses import advertised_host
from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.kv.master.ui")


class StatusPage:
    """A small HTTP server in a daemon thread; :meth:`close` stops it."""

    def __init__(self, listen_addr: str, status: Callable[[], dict[str, Any]]) -> None:
        host, _, port = listen_addr.rpartition(":")
        handler = _handler_for(status)
        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        self._server.daemon_threads = True
        bound_port = self._server.server_address[1]
        self.url = f"http://{advertised_host(host.strip('[]') or '0.0.0.0')}:{bound_port}/"
        """Where the page is served (the real port when 0 was asked for)."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="fluxon-kv-master-ui", daemon=True)
        self._thread.start()
        log.info("kv master status page at %s", self.url)

    def close(self) -> None:
        """Stop serving; idempotent."""
        self._server.shutdown()
        self._server.server_close()


def render_text(status: dict[str, Any]) -> str:
    """The status as a few lines of text, one per member."""
    master = status["master"]
    lines = [
        f"cluster {status['cluster_name']}: master {master['instance_key']} at {master['endpoint']} "
        f"(generation {master['generation']}, coordination {master['coordination']}, {master['keys']} keys)",
        "",
    ]
    for member in status["members"]:
        stats = member.get("stats") or {}
        lines.append(
            f"{member.get('instance_key')}  role={member.get('role', '')}  endpoint={member.get('endpoint', '')}  "
            f"pool_used={stats.get('used_bytes', 0)}/{stats.get('capacity_bytes', 0)}  "
            f"keys_held={member.get('keys_held', 0)}  last_seen={member.get('last_seen_s_ago')}s ago"
        )
    return "\n".join(lines) + "\n"


def _handler_for(status: Callable[[], dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/status.json":
                body, content_type = json.dumps(status(), indent=2).encode(), "application/json"
            elif path == "/":
                body, content_type = render_text(status()).encode(), "text/plain; charset=utf-8"
            else:
                self.send_error(404, "the status page serves / and /status.json")
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("status page: " + format, *args)

    return Handler
