"""The RPC paths the fs master serves, one constant each.

Every FS role and mount client reaches the fs master as ``(fluxon_fs.master.instance_key, path)``
through its own :class:`~fluxon_core.kv.KvClient`. Which request and reply records travel on each
path is declared in :mod:`fluxon_fs.master_api.calls`.
"""

from __future__ import annotations

CONFIG_PATH = "/fluxon_fs/config"
EXPORT_REGISTRY_PATH = "/fluxon_fs/export_registry"
MOUNT_REGISTRY_PATH = "/fluxon_fs/mount_registry"
CACHE_USAGE_PATH = "/fluxon_fs/cache_usage"
AUTH_LOGIN_PATH = "/fluxon_fs/auth/login"
AUTH_VERIFY_PATH = "/fluxon_fs/auth/verify_token"
AUTH_USER_ACCESS_PATH = "/fluxon_fs/auth/user_access"
AUTH_EPOCH_PATH = "/fluxon_fs/auth/epoch"
AUTH_ACCESS_KEY_PATH = "/fluxon_fs/auth/access_key"
TRANSFER_CLAIM_PATH = "/fluxon_fs/transfer/claim"
TRANSFER_RENEW_PATH = "/fluxon_fs/transfer/renew"
TRANSFER_COMPLETE_PATH = "/fluxon_fs/transfer/complete"
TRANSFER_FAIL_PATH = "/fluxon_fs/transfer/fail"
TRANSFER_CREATE_PATH = "/fluxon_fs/transfer/create"
TRANSFER_IMPORT_PATH = "/fluxon_fs/transfer/import_prescan"
TRANSFER_LIST_PATH = "/fluxon_fs/transfer/list"
TRANSFER_SHOW_PATH = "/fluxon_fs/transfer/show"
TRANSFER_ACTION_PATH = "/fluxon_fs/transfer/action"
