"""Access control of the FS roles, on top of the access-store contract in :mod:`fluxon_core.access`.

* :mod:`~fluxon_fs.auth.tokens` — signed, expiring session tokens.
* :mod:`~fluxon_fs.auth.scopes` — export-relative paths, prefix matching and listing visibility.
* :mod:`~fluxon_fs.auth.identity` — :func:`login` and the :class:`Authorizer` every FS request goes through.
* :mod:`~fluxon_fs.fs_agent.remote_access` — the access model as an fs agent sees it, answered by the fs master.

The ``fluxon users`` command lives in :mod:`fluxon_fs.cli.users`.
"""
