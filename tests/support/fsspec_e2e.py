"""``fluxon://`` filesystems on the mount end-to-end cluster (:mod:`tests.support.mount_e2e`).

The filesystem attaches its own external KV client to the same host's owner as the module's mount,
so both read through one host pool, as two clients of one host do in production.
"""

from __future__ import annotations

from typing import Any

from tests.support.fs_cluster import ADMIN, MASTER_KEY
from tests.support.mount_e2e import HOST, MountE2E


def fsspec_options(env: MountE2E, identity: tuple[str, str] = ADMIN, instance_key: str = "fsspec") -> dict[str, Any]:
    """``storage_options`` for ``fluxon://``: the client config a mounting process uses, and an identity."""
    return {
        "config": {
            "kvclient": env.fs.kv.external_config(instance_key, HOST),
            "fluxon_fs": {"master": {"instance_key": MASTER_KEY}},
        },
        "username": identity[0],
        "password": identity[1],
    }
