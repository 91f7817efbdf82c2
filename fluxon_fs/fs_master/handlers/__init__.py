"""The fs master's RPC handlers, one module per domain; each class registers the calls it serves.

* :mod:`~fluxon_fs.fs_master.handlers.table` — :class:`HandlerTable`: decodes requests, dispatches, encodes replies.
* :mod:`~fluxon_fs.fs_master.handlers.config` — the export snapshot clients poll.
* :mod:`~fluxon_fs.fs_master.handlers.registry` — agents' export registrations, clients' mounts.
* :mod:`~fluxon_fs.fs_master.handlers.auth` — login, token verification, user access, access epoch.
* :mod:`~fluxon_fs.fs_master.handlers.transfers` — batches for workers, jobs for users.
"""
