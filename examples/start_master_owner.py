#!/usr/bin/env python3
"""Start a kv master and this host's owner, then keep them running until Ctrl-C.

    python3 examples/start_master_owner.py [--workdir DIR] [--pool-size 256MiB]

The owner publishes <SHARED_FILE_PATH>/<CLUSTER_NAME>/shared.json; any process on this host can then
attach as an external client knowing only CLUSTER_NAME and the shared paths (see
examples/external_put_get_del.py). Role configs and logs go to WORKDIR (--workdir, else the WORKDIR
environment variable, else /tmp/fluxon_demo; never the current directory): logs under WORKDIR/log,
the terminal keeps a summary.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from fluxon_core.runtime import (
    ManagedSubprocess,
    start_kv_master_process,
    start_owner_kvclient_process,
    wait_subproc_or_ctrlc,
)

CLUSTER_NAME = os.environ.get("CLUSTER_NAME", "fluxon_demo")
SHARED_MEMORY_PATH = os.environ.get("SHARED_MEMORY_PATH", "/dev/shm/fluxon_demo")
SHARED_FILE_PATH = os.environ.get("SHARED_FILE_PATH", "/dev/shm/fluxon_demo")
MASTER_INSTANCE_KEY = "kv-master"
OWNER_INSTANCE_KEY = os.environ.get("OWNER_INSTANCE_KEY", f"owner-{socket.gethostname()}")
WORKDIR = os.environ.get("WORKDIR") or "/tmp/fluxon_demo"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workdir", default=WORKDIR, help="role configs and logs (default %(default)s, from $WORKDIR when set)"
    )
    parser.add_argument("--pool-size", default="256MiB", help="shared-memory pool the owner contributes")
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)

    master = start_kv_master_process(
        {"instance_key": MASTER_INSTANCE_KEY, "cluster_name": CLUSTER_NAME},
        workdir=os.path.join(workdir, "kv_master"),
        log_path=os.path.join(workdir, "log", "kv_master.log"),
    )
    children = [ManagedSubprocess("kv_master", master)]
    try:
        master_ready = master.wait_ready(60)
        print(f"kv master {master_ready.instance_key} ready at {master_ready.endpoint}", flush=True)
        owner = start_owner_kvclient_process(
            {
                "instance_key": OWNER_INSTANCE_KEY,
                "contribute_to_cluster_pool_size": {"dram": args.pool_size},
                "fluxonkv_spec": {
                    "cluster_name": CLUSTER_NAME,
                    "shared_memory_path": SHARED_MEMORY_PATH,
                    "shared_file_path": SHARED_FILE_PATH,
                    "master_address": master_ready.endpoint,
                },
            },
            workdir=os.path.join(workdir, "owner"),
            log_path=os.path.join(workdir, "log", "owner.log"),
        )
        children.append(ManagedSubprocess("owner", owner))
        owner_ready = owner.wait_ready(60)
    except Exception as exc:
        print(f"start failed: {exc}", file=sys.stderr)
        for child in reversed(children):
            child.proc.terminate()
            child.proc.wait()
        return 1
    print(
        f"owner {owner_ready.instance_key} ready ({owner_ready.fields.get('pool_bytes')} bytes of pool); "
        f"shared.json at {SHARED_FILE_PATH}/{CLUSTER_NAME}/shared.json",
        flush=True,
    )
    print(f"logs under {workdir}/log; press Ctrl-C to stop", flush=True)
    wait_subproc_or_ctrlc(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
