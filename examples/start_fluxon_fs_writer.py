#!/usr/bin/env python3
"""The Fluxon FS example writer: attach to this host's owner, mount the export, print one line per operation.

    python3 examples/start_fluxon_fs_writer.py -c <writer-config.yaml> -w <writer-workdir> [--rounds N]

``examples/start_kv_and_fs_svc.py`` writes a ready writer.yaml into its workdir.
FLUXON_LOG=DEBUG shows per-operation logs of the mount (path, cache hit or remote, bytes, latency).
"""

import sys

from fluxon_fs.demo.clients import example_main

if __name__ == "__main__":
    sys.exit(example_main("writer", __doc__))
