"""``python -m fluxon_fs.fs_agent --config F --workdir W``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from fluxon_core.config import load_yaml_file
from fluxon_core.runtime.role_main import RunningRole, run_role, with_monitoring
from fluxon_fs.config import FsRoleConfig
from fluxon_fs.fs_agent.agent import start_fs_agent

ROLE = "fs_agent"


def start(config_path: Path, workdir: Path) -> RunningRole:
    """Start the fs agent described by ``config_path``."""
    config = load_yaml_file(FsRoleConfig, config_path)
    agent = start_fs_agent(config, workdir)
    running = RunningRole(
        instance_key=agent.instance_key,
        endpoint=agent.endpoint,
        config=config,
        stop=agent.close,
        extra={"exports": ",".join(sorted(agent.ops))},
    )
    return with_monitoring(ROLE, config.monitoring, running)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_role(ROLE, start, argv)


if __name__ == "__main__":
    sys.exit(main())
