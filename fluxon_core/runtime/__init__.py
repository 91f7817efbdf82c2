"""Starting and supervising role processes (KV.md §5)."""

from fluxon_core.runtime.processes import (
    ChildProcessExitedError,
    ManagedSubprocess,
    RoleProcess,
    start_kv_master_process,
    start_owner_kvclient_process,
    start_role_process,
    wait_subproc_or_ctrlc,
)
from fluxon_core.runtime.readiness import ReadyInfo, RoleStartError

__all__ = [
    "ChildProcessExitedError",
    "ManagedSubprocess",
    "ReadyInfo",
    "RoleProcess",
    "RoleStartError",
    "start_kv_master_process",
    "start_owner_kvclient_process",
    "start_role_process",
    "wait_subproc_or_ctrlc",
]
