"""The fs master's RPC protocol as every other role and client sees it.

* :mod:`~fluxon_fs.master_api.paths` — the paths the fs master serves.
* :mod:`~fluxon_fs.master_api.records` — a frozen record for every request and reply.
* :mod:`~fluxon_fs.master_api.calls` — which request and reply travel on which path.
* :mod:`~fluxon_fs.master_api.codec` — records ⇄ JSON-able dicts, strictly.
* :mod:`~fluxon_fs.master_api.link` — :class:`FsMasterLink`, the typed client.

The fs master serves the calls with :mod:`fluxon_fs.fs_master.handlers`.
"""
