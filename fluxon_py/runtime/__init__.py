"""``fluxon_py.runtime``: role process helpers under the guide's import path."""

from fluxon_core.runtime import (
    ManagedSubprocess,
    start_kv_master_process,
    start_owner_kvclient_process,
    wait_subproc_or_ctrlc,
)
from fluxon_fs.roles import start_fs_agent_process, start_fs_master_process

__all__ = [
    "ManagedSubprocess",
    "start_fs_agent_process",
    "start_fs_master_process",
    "start_kv_master_process",
    "start_owner_kvclient_process",
    "wait_subproc_or_ctrlc",
]
