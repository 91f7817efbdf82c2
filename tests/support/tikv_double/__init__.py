"""A TEST DOUBLE of a TiKV cluster (PD + one TiKV store), for the ``tikv`` state store's tests.

This is **not** TiKV. No TiKV server can be installed where Fluxon's CI runs, so the tests drive the
real ``tikv_client`` package (client-rust, over real gRPC on a loopback port) against this in-process
stand-in that speaks the subset of the PD and TiKV protocols that client uses:

* PD (``pdpb.PD``): GetMembers, Tso (bidirectional stream), GetRegion, GetRegionByID, GetStore,
  GetAllStores — one member that is its own leader, one store, one region ``["", "")`` covering
  every key.
* TiKV (``tikvpb.Tikv``): KvGet, KvBatchGet, KvScan, KvPrewrite, KvCommit, KvBatchRollback,
  KvCleanup, KvCheckTxnStatus, KvResolveLock, KvTxnHeartBeat, KvScanLock — optimistic Percolator
  transactions over an in-memory MVCC map (:mod:`.mvcc`).

Messages are a hand-written subset of kvproto with its field numbers (:mod:`.schema`). Not modelled:
region splits/merges and region errors, several stores or PD members, leader changes, Raft, GC,
pessimistic locking, async commit and 1PC, raw KV, TLS, persistence beyond the process. See
docs/tikv.md for what the tests therefore do and do not prove.
"""

from tests.support.tikv_double.server import TikvDouble

__all__ = ["TikvDouble"]
