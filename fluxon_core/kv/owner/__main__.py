"""``python -m fluxon_core.kv.owner --config F --workdir W``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from fluxon_core.kv.client import new_store
from fluxon_core.kv.config import FluxonKvClientConfig
from fluxon_core.runtime.role_main import RunningRole, run_role

ROLE = "owner"


def start(config_path: Path, workdir: Path) -> RunningRole:
    """Create the owner store described by ``config_path``."""
    config = FluxonKvClientConfig.from_file(config_path)
    if not config.settings().is_owner:
        raise ValueError(
            f"{config_path}: contribute_to_cluster_pool_size.dram must be > 0 for the owner role "
            "(this config describes an external client)"
        )
    store = new_store(config).unwrap("new_store failed")
    stats = store.pool_stats()
    return RunningRole(
        instance_key=store.instance_key(),
        endpoint=store.endpoint(),
        config=config.settings(),
        stop=store.close,
        extra={
            "cluster": store.get_cluster_name(),
            "generation": str(store.generation()),
            "pool_bytes": str(stats.get("capacity_bytes", 0)),
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_role(ROLE, start, argv)


if __name__ == "__main__":
    sys.exit(main())
