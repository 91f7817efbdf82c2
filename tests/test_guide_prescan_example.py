"""The guide's standalone pre-scan example, run verbatim (examples/standalone_prescan.py is the guide's
code unchanged) against a reachable TiKV endpoint at 127.0.0.1:12379 — here the TiKV *test double*
(tests/support/tikv_double), since no TiKV server can run on these machines.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fluxon_fs.transfer.records import decode_prescan, prescan_key
from fluxon_fs.transfer.state_config import open_state_store
from tests.support.tikv_double.server import TikvDouble

ROOT = Path(__file__).resolve().parents[1]
GUIDE_SRC = Path("/data/demo_src")


@pytest.fixture
def guide_world():
    if GUIDE_SRC.exists():
        pytest.fail(f"{GUIDE_SRC} already exists; this test creates and removes it")
    double = TikvDouble()
    double.port = 12379  # the endpoint the guide's example names
    double.start()
    (GUIDE_SRC / "tmp").mkdir(parents=True)
    (GUIDE_SRC / "logs").mkdir()
    (GUIDE_SRC / "tmp" / "scratch.bin").write_bytes(b"s" * 100)
    (GUIDE_SRC / "logs" / "debug.txt").write_text("debug")
    (GUIDE_SRC / "logs" / "app.txt").write_text("app")
    (GUIDE_SRC / "data.bin").write_bytes(b"d" * 4096)
    try:
        yield double
    finally:
        shutil.rmtree(GUIDE_SRC)
        if not any(Path("/data").iterdir()):
            Path("/data").rmdir()
        double.stop()


def test_guide_example_runs_verbatim_and_records_the_scan(guide_world):
    result = subprocess.run(
        [sys.executable, "examples/standalone_prescan.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "job_id=" in result.stdout and "scan_epoch=1" in result.stdout and "batch_count=1" in result.stdout
    assert "file_count=2" in result.stdout  # data.bin and logs/app.txt: tmp/ and logs/debug.txt skipped
    store = open_state_store(
        {
            "kind": "tikv",
            "tikv": {"pd_endpoints": ["127.0.0.1:12379"], "key_prefix": "/fluxon_fs_transfer/demo_prescan/"},
        }
    )
    try:
        job_id = result.stdout.split("job_id='")[1].split("'")[0]
        record = decode_prescan(store.get(prescan_key(job_id)))
    finally:
        store.close()
    assert (record.state, record.file_count, record.src_root_dir) == ("done", 2, str(GUIDE_SRC))
