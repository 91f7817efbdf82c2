"""``python -m fluxon_fs.s3_gateway --config F --workdir W``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from fluxon_core.config import load_yaml_file
from fluxon_core.runtime.role_main import RunningRole, run_role, with_monitoring
from fluxon_fs.config import FsRoleConfig
from fluxon_fs.s3_gateway.gateway import S3Gateway

ROLE = "s3_gateway"


def start(config_path: Path, workdir: Path) -> RunningRole:
    """Start the S3 gateway described by ``config_path``."""
    config = load_yaml_file(FsRoleConfig, config_path)
    gateway = S3Gateway(config, workdir)
    running = RunningRole(
        instance_key=gateway.instance_key,
        endpoint=gateway.url,
        config=config,
        stop=gateway.close,
        extra={"s3": gateway.url},
    )
    return with_monitoring(ROLE, config.monitoring, running)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_role(ROLE, start, argv)


if __name__ == "__main__":
    sys.exit(main())
