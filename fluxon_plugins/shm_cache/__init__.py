"""The ``shm_cache`` default plugin: the per-host shared-memory content pool (``kind: shm``).

One owner per host (:class:`ShmPoolOwner`) creates the pool and enforces its budget with LRU
eviction; readers in other processes (:class:`ShmPoolReader`) attach by directory and get
zero-copy views without a round trip. See ``layout.py`` for the files, ``value_file.py`` for
atomicity, ``control.py`` and ``reader.py`` for the reader protocol.
"""

from fluxon_plugins.shm_cache.config import ShmCacheConfig
from fluxon_plugins.shm_cache.owner import PoolValueWriter, ShmPoolOwner
from fluxon_plugins.shm_cache.reader import OwnerLink, ShmPoolReader, StagedValue, StagingWriter

__all__ = [
    "OwnerLink",
    "PoolValueWriter",
    "ShmCacheConfig",
    "ShmPoolOwner",
    "ShmPoolReader",
    "StagedValue",
    "StagingWriter",
]
