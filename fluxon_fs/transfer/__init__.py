"""Directory transfer jobs and pre-scans, durable in a ``transfer_state_store``.

* :mod:`~fluxon_fs.transfer.prescan` — ``transfer_check_local_blocking``: walk a local tree into batches;
* :mod:`~fluxon_fs.transfer.jobs` — the job and batch records; :mod:`~fluxon_fs.transfer.records` —
  pre-scan records, scan entries and batch bodies; :mod:`~fluxon_fs.transfer.states` — their states;
* :mod:`~fluxon_fs.transfer.codec` — the one attrs-record ⇄ JSON codec of the state store and its decode policy
  (fs-master RPC payloads go through :mod:`fluxon_fs.master_api.codec`);
* :mod:`~fluxon_fs.transfer.job_store`, :mod:`~fluxon_fs.transfer.lifecycle`,
  :mod:`~fluxon_fs.transfer.leases` — storage, state transitions and batch claims, behind the fs
  master's :class:`~fluxon_fs.transfer.coordinator.TransferCoordinator`;
* :mod:`~fluxon_fs.transfer.batching`, :mod:`~fluxon_fs.transfer.copier` — sealing batches,
  copying and verifying them. Driving jobs from Python: :class:`fluxon_fs.master_api.transfer_client.TransferClient`.
"""
