"""Development entry: serve one directory as an export, without a master or registration.

    python -m fluxon_fs.export.serving.serve_dir --export NAME --root DIR --bind ipc:///tmp/fx/agent.sock

Prints exactly one line ``READY endpoint=<endpoint>`` on stdout once the export is served, then
runs until SIGTERM/SIGINT or until stdin reaches EOF (so a parent that dies takes it along when it
passes a pipe as stdin). Authorization is off: anyone who can reach the endpoint may use the export.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from fluxon_core.log_setup import configure_logging
from fluxon_core.plugins import get_backends
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.export.serving.rpc_service import serve_export


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line of the entry."""
    parser = argparse.ArgumentParser(
        prog="python -m fluxon_fs.export.serving.serve_dir", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--export", required=True, help="export name served at /fluxon_fs/<export>/<op>")
    parser.add_argument("--root", required=True, help="absolute path of the directory to export")
    parser.add_argument("--bind", required=True, help="bind address: ipc://PATH or tcp://HOST:PORT (port 0: any)")
    parser.add_argument("--transport", default="zmq", help="transport backend kind (default: zmq)")
    parser.add_argument(
        "--session-idle-timeout", type=float, default=60.0, help="seconds before an idle write session is closed"
    )
    parser.add_argument(
        "--watch-stdin", action="store_true", help="also stop when stdin reaches EOF (the parent went away)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until told to stop; returns the exit code."""
    args = parse_args(argv)
    configure_logging()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.watch_stdin:

        def stop_at_stdin_eof() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=stop_at_stdin_eof, daemon=True).start()

    transport = get_backends().create("transport", args.transport, None)
    ops = LocalExportOps(args.root, session_idle_timeout_s=args.session_idle_timeout)
    server = transport.bind_server(args.bind)
    try:
        served = serve_export(server, args.export, ops)
        print(f"READY endpoint={server.endpoint}", flush=True)
        while not stop.wait(1.0):
            pass
        served.close()
    finally:
        server.close()
        ops.close()
        close_transport = getattr(transport, "close", None)
        if close_transport is not None:
            close_transport()
    return 0


if __name__ == "__main__":
    sys.exit(main())
