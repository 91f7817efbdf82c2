#!/usr/bin/env python3
"""Start the Fluxon FS service plane on this host and keep it running until Ctrl-C.

    python3 examples/start_kv_and_fs_svc.py                    # kv master + owner + fs master + fs agent + S3 gateway
    python3 examples/start_kv_and_fs_svc.py --without-master   # owner + fs agent joining an existing cluster

Everything is on this host with the embedded defaults (local coordination, sqlite access_db and
transfer state). The default mode writes WORKDIR/join.token (0600): copy it to another host and
start this script there with FLUXON_JOIN_TOKEN_FILE=<its path> and --without-master to join the
cluster (docs/deploy.md). Set ETCD_ENDPOINT=host:port (or pass --etcd) to use a real etcd instead. Names and
paths come from environment variables of the same name: CLUSTER_NAME, SHARED_MEMORY_PATH,
SHARED_FILE_PATH, KV_MASTER_ADDRESS, FS_MASTER_INSTANCE_KEY, OWNER_INSTANCE_KEY,
FS_AGENT_INSTANCE_KEY, EXPORT_NAME, REMOTE_ROOT_DIR, FS_PANEL_LISTEN_ADDR, FS_PANEL_PUBLIC_BASE_URL,
ADMIN_USERNAME, ADMIN_PASSWORD, S3_GATEWAY_LISTEN_ADDR, S3_GATEWAY_INSTANCE_KEY. WORKDIR (--workdir, default /tmp/fluxon_fs_demo) holds configs, logs
and data: role output goes to WORKDIR/log (the terminal keeps a summary), and REMOTE_ROOT_DIR, unless
set, is WORKDIR/export_<EXPORT_NAME>. TRANSFER_STATE_STORE_PD_ENDPOINTS (TiKV) or
TRANSFER_STATE_STORE_ETCD_ENDPOINTS (etcd), with TRANSFER_STATE_STORE_KEY_PREFIX, choose the transfer
state store instead of the embedded sqlite file.

Addresses (default loopback: one host). Each role's bind and advertised address: KV_MASTER_HOST,
KV_MASTER_ADVERTISE_HOST (kv master), OWNER_RPC_HOST, OWNER_RPC_ADVERTISE_HOST (owner; the fs master,
the fs agent and clients of the host follow it), FS_AGENT_LISTEN_ADDRESS, FS_AGENT_ADVERTISE_HOST (fs
agent, when it must differ), FS_PANEL_LISTEN_ADDR, FS_PANEL_PUBLIC_BASE_URL (panel). 0.0.0.0 binds every
interface and advertises the host's primary address; see docs/deploy.md for several hosts.
Ready-to-use writer.yaml and reader.yaml are written into WORKDIR.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fluxon_core.runtime import wait_subproc_or_ctrlc
from fluxon_fs.auth.join_token import read_join_token
from fluxon_fs.demo.stack import StackSettings, start_stack, write_client_configs, write_stack_join_token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--without-master", action="store_true", help="start only owner + fs agent")
    parser.add_argument(
        "--workdir", default=os.environ.get("WORKDIR", "/tmp/fluxon_fs_demo"), help="configs, logs, data"
    )
    parser.add_argument(
        "--etcd", default=None, metavar="HOST:PORT", help="use this etcd (default: $ETCD_ENDPOINT or none)"
    )
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    overrides = {"etcd_endpoint": args.etcd} if args.etcd else {}
    try:
        settings = StackSettings.from_env(workdir, **overrides)
        children = start_stack(settings, with_master=not args.without_master)
    except Exception as exc:
        print(f"start failed: {exc}\nsee the role logs under {workdir / 'log'}", file=sys.stderr)
        return 1
    configs = write_client_configs(settings)
    if not args.without_master:
        print(f"panel:  {settings.panel_url}/  (user {settings.admin_username!r})")
        print(f"s3:     {settings.s3_url}  (access keys: {settings.panel_url}/ui/keys/ or")
        print(f"        fluxon users create-key {settings.admin_username} --db {settings.access_db_path}; docs/s3.md)")
        token = write_stack_join_token(settings)
        print(f"join token: {token}  (0600; copy it to a host and run this script there with")
        print(f"  FLUXON_JOIN_TOKEN_FILE=<its path> {Path(sys.argv[0]).name} --without-master)")
        local = read_join_token(token).host_local_addresses()
        if local:
            print(f"  note: it names {', '.join(local)}, which no other host can reach; to let hosts join, start")
            print("  this host with KV_MASTER_HOST=0.0.0.0 (and ETCD_ENDPOINT=<this host's address>:<port>)")
    elif settings.join_token is not None:
        print(f"joined cluster {settings.cluster_name!r} with the join token")
    print(f"export {settings.export_name!r} serves {settings.remote_root_dir}")
    print("next, in other terminals:")
    print(f"  python3 examples/start_fluxon_fs_writer.py -c {configs['writer']} -w {workdir / 'writer'}")
    print(f"  python3 examples/start_fluxon_fs_reader.py -c {configs['reader']} -w {workdir / 'reader'}")
    print("press Ctrl-C to stop", flush=True)
    wait_subproc_or_ctrlc(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
