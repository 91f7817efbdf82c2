"""The owner role: a process holding an owner store (the host's pool, ``shared.json``, peer transfers).

Run it with ``python -m fluxon_core.kv.owner --config F --workdir W`` (F is a ``FluxonKvClientConfig``
with ``contribute_to_cluster_pool_size.dram > 0``), ``fluxon start owner -c F`` or
:func:`fluxon_core.runtime.start_owner_kvclient_process`.
"""

from fluxon_core.kv.owner.node import OwnerNode

__all__ = ["OwnerNode"]
