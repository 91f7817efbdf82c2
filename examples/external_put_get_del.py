#!/usr/bin/env python3
"""Attach to this host's owner as an external client, then put, get and delete a value.

    python3 examples/external_put_get_del.py

Run examples/start_master_owner.py first (same CLUSTER_NAME / SHARED_MEMORY_PATH / SHARED_FILE_PATH).
"""

from __future__ import annotations

import os
import sys

from fluxon_core.errors import KeyNotFoundError
from fluxon_core.kv import FluxonKvClientConfig, new_store

CLUSTER_NAME = os.environ.get("CLUSTER_NAME", "fluxon_demo")
SHARED_MEMORY_PATH = os.environ.get("SHARED_MEMORY_PATH", "/dev/shm/fluxon_demo")
SHARED_FILE_PATH = os.environ.get("SHARED_FILE_PATH", "/dev/shm/fluxon_demo")


def main() -> int:
    cfg = FluxonKvClientConfig(
        {
            "instance_key": f"example-external-{os.getpid()}",
            "fluxonkv_spec": {
                "cluster_name": CLUSTER_NAME,
                "shared_memory_path": SHARED_MEMORY_PATH,
                "shared_file_path": SHARED_FILE_PATH,
            },
        }
    )
    with new_store(cfg).unwrap("new_store failed") as store:
        key = f"/examples/{store.instance_key()}/greeting"
        payload = os.urandom(256 * 1024)
        store.put_blocking(key, {"text": "hello", "count": 3, "ratio": 0.5, "ok": True, "blob": payload}).unwrap(
            "put failed"
        )
        holder = store.get_blocking(key).unwrap("get failed")
        value = holder.access()
        blob = value["blob"]
        assert isinstance(blob, memoryview) and blob == payload, "payload changed on the way"
        print(f"put/get {key}: text={value['text']!r} count={value['count']} blob={len(blob)} bytes (zero-copy view)")
        print(f"is_exist={store.is_exist(key).unwrap()} size={store.get_size(key).unwrap()} bytes")
        print(f"keys under /examples/: {store.count_prefix('/examples/').unwrap()}")
        del value, blob
        holder.release()
        store.remove(key).unwrap("remove failed")
        missing = store.get_blocking(key)
        assert isinstance(missing.error(), KeyNotFoundError), missing
        print(f"removed {key}; get now gives {type(missing.error()).__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
