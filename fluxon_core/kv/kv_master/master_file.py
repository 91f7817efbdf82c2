"""``<workdir>/kv_master.json``: where a running master can be found by tools on its host (``fluxon status``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluxon_core.kv.kv_master.service import KvMaster

MASTER_FILE_NAME = "kv_master.json"


def write_master_file(workdir: Path, master: KvMaster) -> Path:
    """Write the master's endpoint and secret file location atomically (mode 0600)."""
    record = {
        "cluster_name": master.config.cluster_name,
        "instance_key": master.config.instance_key,
        "endpoint": master.endpoint,
        "generation": master.generation,
        "pid": os.getpid(),
        "cluster_secret_file": str(master.config.secret_file()),
    }
    path = workdir / MASTER_FILE_NAME
    tmp = path.with_name(f".{MASTER_FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    os.replace(tmp, path)
    return path


def read_master_file(workdir: Path) -> dict[str, Any]:
    """The record a master wrote into ``workdir``; FileNotFoundError naming the path when absent."""
    path = Path(workdir) / MASTER_FILE_NAME
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: no kv master was started with --workdir {workdir}") from None
    return data
