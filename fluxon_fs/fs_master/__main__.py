"""``python -m fluxon_fs.fs_master --config F --workdir W``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from fluxon_core.config import load_yaml_file
from fluxon_core.runtime.role_main import RunningRole, run_role, with_monitoring
from fluxon_fs.config import FsRoleConfig
from fluxon_fs.fs_master.master import FsMaster

ROLE = "fs_master"


def start(config_path: Path, workdir: Path) -> RunningRole:
    """Start the fs master described by ``config_path``."""
    config = load_yaml_file(FsRoleConfig, config_path)
    master = FsMaster(config, workdir)
    running = RunningRole(
        instance_key=master.instance_key,
        endpoint=master.store.endpoint(),
        config=config,
        stop=master.close,
        extra={"panel": master.panel_url} if master.panel_url else {},
    )
    return with_monitoring(ROLE, config.monitoring, running)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_role(ROLE, start, argv)


if __name__ == "__main__":
    sys.exit(main())
