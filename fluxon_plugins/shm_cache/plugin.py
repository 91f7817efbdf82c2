"""Hook implementations of the ``shm_cache`` plugin: ``kind: shm``, the per-host shared-memory pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_plugins.shm_cache.config import ShmCacheConfig

if TYPE_CHECKING:
    from fluxon_plugins.shm_cache.owner import ShmPoolOwner
    from fluxon_plugins.shm_cache.reader import ShmPoolReader


def create_shm_cache(config: ShmCacheConfig) -> ShmPoolOwner | ShmPoolReader:
    """Build the owner or a reader of the pool at ``config.path``, per ``config.role``."""
    from fluxon_plugins.shm_cache.owner import ShmPoolOwner
    from fluxon_plugins.shm_cache.reader import ShmPoolReader

    if isinstance(config, ShmCacheConfig) and config.role == "reader":
        return ShmPoolReader(config)
    return ShmPoolOwner(config)


@hookimpl
def fluxon_register_caches(register: RegisterBackend) -> None:
    """Provide ``kind: shm``."""
    register("shm", create_shm_cache, config_type=ShmCacheConfig)
