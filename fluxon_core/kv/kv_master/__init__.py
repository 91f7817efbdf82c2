"""The kv master role: membership authority and route table of the cluster-wide cache.

Run it with ``python -m fluxon_core.kv.kv_master --config F --workdir W``, ``fluxon start kv-master -c F``
or :func:`fluxon_core.runtime.start_kv_master_process`.
"""

from fluxon_core.kv.kv_master.service import KvMaster

__all__ = ["KvMaster"]
