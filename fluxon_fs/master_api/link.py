"""Talking to the fs master over the KV plane: RPC paths and a small typed client.

Every FS role and mount client reaches the fs master as ``(fluxon_fs.master.instance_key, path)``
through its own :class:`~fluxon_core.kv.KvClient`; calls are signed by the KV plane.
"""

from __future__ import annotations

from typing import Any

from fluxon_core.kv import KvClient

CONFIG_PATH = "/fluxon_fs/config"
EXPORT_REGISTRY_PATH = "/fluxon_fs/export_registry"
MOUNT_REGISTRY_PATH = "/fluxon_fs/mount_registry"
AUTH_LOGIN_PATH = "/fluxon_fs/auth/login"
AUTH_VERIFY_PATH = "/fluxon_fs/auth/verify_token"
AUTH_USER_ACCESS_PATH = "/fluxon_fs/auth/user_access"
AUTH_EPOCH_PATH = "/fluxon_fs/auth/epoch"
TRANSFER_CLAIM_PATH = "/fluxon_fs/transfer/claim"
TRANSFER_RENEW_PATH = "/fluxon_fs/transfer/renew"
TRANSFER_COMPLETE_PATH = "/fluxon_fs/transfer/complete"
TRANSFER_FAIL_PATH = "/fluxon_fs/transfer/fail"
TRANSFER_CREATE_PATH = "/fluxon_fs/transfer/create"
TRANSFER_IMPORT_PATH = "/fluxon_fs/transfer/import_prescan"
TRANSFER_LIST_PATH = "/fluxon_fs/transfer/list"
TRANSFER_SHOW_PATH = "/fluxon_fs/transfer/show"
TRANSFER_ACTION_PATH = "/fluxon_fs/transfer/action"

DEFAULT_MASTER_TIMEOUT_MS = 10_000


class FsMasterLink:
    """Calls to one fs master; raises the typed error the master (or the KV plane) reported."""

    def __init__(
        self, store: KvClient, master_instance_key: str, timeout_ms: float = DEFAULT_MASTER_TIMEOUT_MS
    ) -> None:
        self.store = store
        self.master_instance_key = master_instance_key
        self.timeout_ms = timeout_ms

    def call(self, path: str, payload: dict[str, Any], timeout_ms: float | None = None) -> dict[str, Any]:
        """Call ``path`` on the master and return its reply."""
        result = self.store.rpc_call(self.master_instance_key, path, payload, timeout_ms or self.timeout_ms)
        if result.is_err():
            raise result.unwrap_error()
        return result.unwrap()
