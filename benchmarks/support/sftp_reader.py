"""Read files over SFTP and print the seconds it took: ``python -m benchmarks.support.sftp_reader``.

The benchmark runs it inside a lab host (``ip netns exec <ns> python -m ...``) so that the reads cross
the lab network, as a mount's reads do from a process on that host. It takes one JSON request on
stdin — ``{"host", "port", "username", "key_filename", "paths": [...], "prefetch": bool}`` — connects
with paramiko (the library fsspec's ``sftp`` wraps) before the clock starts, reads every path once
with ``open().read()`` (``prefetch`` pipelines the reads of a large file, as ``sftp get`` does) and
prints ``{"files", "size", "seconds"}``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import paramiko


def read_files(request: dict[str, Any]) -> dict[str, Any]:
    """Connect, then time reading every path of ``request`` once."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        request["host"],
        port=request["port"],
        username=request["username"],
        key_filename=request["key_filename"],
        look_for_keys=False,
        allow_agent=False,
    )
    try:
        sftp = client.open_sftp()
        size = 0
        started = time.perf_counter()
        for path in request["paths"]:
            with sftp.open(path, "rb") as handle:
                if request.get("prefetch"):
                    handle.prefetch()
                size += len(handle.read())
        return {"files": len(request["paths"]), "size": size, "seconds": time.perf_counter() - started}
    finally:
        client.close()


if __name__ == "__main__":
    print(json.dumps(read_files(json.load(sys.stdin))))
