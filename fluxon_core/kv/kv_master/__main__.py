"""``python -m fluxon_core.kv.kv_master --config F --workdir W``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from fluxon_core.kv.config import load_master_config
from fluxon_core.kv.kv_master.service import KvMaster
from fluxon_core.kv.kv_master.status_page import StatusPage
from fluxon_core.log_setup import configure_logging
from fluxon_core.runtime.role_main import RunningRole, run_role, with_monitoring

ROLE = "kv_master"


def start(config_path: Path, workdir: Path) -> RunningRole:
    """Start a kv master from ``config_path``; its endpoint is also written to ``<workdir>/kv_master.json``."""
    from fluxon_core.kv.kv_master.master_file import write_master_file

    config = load_master_config(config_path)
    if config.log_dir is not None:
        configure_logging(Path(config.log_dir) / f"kv_master.{config.instance_key}.log")
    master = KvMaster(config)
    master.start()
    write_master_file(workdir, master)
    page = StatusPage(config.master_ui.http_listen_addr, master.status) if config.master_ui.http_listen_addr else None
    extra = {"cluster": config.cluster_name, "generation": str(master.generation)}
    if page is not None:
        extra["ui"] = page.url

    def stop() -> None:
        if page is not None:
            page.close()
        master.stop()

    running = RunningRole(
        instance_key=config.instance_key, endpoint=master.endpoint, config=config, stop=stop, extra=extra
    )
    return with_monitoring(ROLE, config.monitoring, running)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_role(ROLE, start, argv)


if __name__ == "__main__":
    sys.exit(main())
