#!/usr/bin/env python3
"""The Fluxon FS example writer: attach to this host's owner, mount the export, print one line per operation.

    python3 examples/start_fluxon_fs_writer.py -c <writer-config.yaml> -w <writer-workdir> [--rounds N]

``examples/start_kv_and_fs_svc.py`` writes a ready writer.yaml into its workdir.
FLUXON_LOG=DEBUG shows per-operation logs of the mount (path, cache hit or remote, bytes, latency).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from fluxon_core.log_setup import configure_logging
from fluxon_fs.demo.clients import run_writer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="writer config YAML")
    parser.add_argument("-w", "--workdir", required=True, help="writer working directory")
    parser.add_argument("--rounds", type=int, default=0, help="stop after N rounds (default: run until Ctrl-C)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    args = parser.parse_args()
    configure_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return run_writer(args.config, args.workdir, args.rounds, args.interval, stop)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
