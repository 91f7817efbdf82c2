"""Set-user-ID, set-group-ID and sticky bits never reach the agent host unless the export allows them.

A user who may write an export must not be able to plant a setuid program owned by the agent's
user: a mounting process in its own OS process chmods a file to ``0o4755``, creates a file with
``Path.touch(mode=0o6755)`` and a directory with ``os.mkdir(mode=0o3777)``, and opens a write
session with ``mode=0o4755`` straight over the export protocol; the agent applies each mode without
those bits. An export configured with ``allow_setid_bits: true`` keeps them. A transfer copies
permission bits only, even into such an export.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.transfer.jobs import JobSpec
from tests.support.fs_cluster import ADMIN, MASTER_KEY, MOUNTING_PROCESS_START, FsCluster, fs_cluster

SETID = 0o7000


@pytest.fixture(scope="module")
def fs() -> Iterator[FsCluster]:
    with fs_cluster() as cluster:
        cluster.start_master()
        exports = {name: str(cluster.export_dir(name)) for name in ("plain", "setid")}
        cluster.start_agent("agent-1", exports, export_options={"setid": {"allow_setid_bits": True}})
        yield cluster


MOUNTING_PROCESS = (
    MOUNTING_PROCESS_START
    + """
link = FsMasterLink(store, args["master"])
token = link.login(Login(*args["identity"])).token
exports = link.export_snapshot(ExportSnapshotQuery()).exports
for export in ("plain", "setid"):
    mount = os.path.join(args["mount"], export)
    patcher.mount_remote_dir(local_mount_dir_abs=mount, export_name=export)
    with open(os.path.join(mount, "chmodded"), "w") as f:
        f.write("#!/bin/sh\\n")
    os.chmod(os.path.join(mount, "chmodded"), 0o4755)
    Path(mount, "touched").touch(mode=0o6755)
    os.mkdir(os.path.join(mount, "made_dir"), mode=0o3777)
    ops = RemoteExportOps(
        default_transport().new_client(), exports[export].agents[0].endpoint, export, auth=token, caller="app"
    )
    session = ops.session_open("opened", create=True, exclusive=True, truncate=False, mode=0o4755)
    ops.session_finalize(session.session_id)
print("done")
patcher.uninstall()
store.close()
"""
)


def test_a_mounting_process_cannot_set_setid_bits_unless_the_export_allows_them(fs: FsCluster, tmp_path: Path) -> None:
    args = {"kvclient": fs.kvclient("setid-app"), "master": MASTER_KEY, "identity": list(ADMIN), "mount": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", MOUNTING_PROCESS, json.dumps(args)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    names = ("chmodded", "touched", "made_dir", "opened")
    plain = {name: (fs.export_dir("plain") / name).stat().st_mode for name in names}
    assert {name: mode & SETID for name, mode in plain.items()} == dict.fromkeys(names, 0), {
        n: oct(m) for n, m in plain.items()
    }
    assert stat.S_IMODE(plain["chmodded"]) == 0o755  # the permission bits are applied as asked
    assert stat.S_ISDIR(plain["made_dir"])

    allowed = {name: (fs.export_dir("setid") / name).stat().st_mode for name in names}
    assert allowed["chmodded"] == 0o104755  # what the default refuses: the export opted in
    # mkdir(2) takes the sticky bit from the mode (the setgid bit of a directory comes from its parent only).
    assert allowed["opened"] & 0o4000 and allowed["touched"] & 0o6000 == 0o6000 and allowed["made_dir"] & 0o1000


def test_transfers_copy_permission_bits_only(fs: FsCluster) -> None:
    folder = fs.export_dir("plain") / "tools"
    folder.mkdir()
    (folder / "suid").write_text("#!/bin/sh\n")
    os.chmod(folder / "suid", 0o4755)
    (folder / "shared").mkdir()
    os.chmod(folder / "shared", 0o3775)
    client = TransferClient(fs.kv.external(f"cli-{uuid.uuid4().hex[:6]}", fs.host), MASTER_KEY, *ADMIN)
    spec = JobSpec(source_export="plain", source_dir="tools", target_export="setid", target_prefix="copies")
    final = client.wait(client.create_job(spec), 60)
    assert final["state"] == "succeeded", final
    copied = fs.export_dir("setid") / "copies" / "tools"
    assert oct((copied / "suid").stat().st_mode) == oct(0o100755)
    assert oct(stat.S_IMODE((copied / "shared").stat().st_mode)) == oct(0o775)
