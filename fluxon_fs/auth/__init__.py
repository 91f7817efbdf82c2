"""Access control building blocks: password hashes, session tokens, scope decisions, the ``fluxon users`` CLI.

* :mod:`~fluxon_fs.auth.model` — the ``bootstrap_access_model`` config classes and :class:`ScopeMode`.
* :mod:`~fluxon_core.access.records` — what an access store returns (users, scope grants, a user's access).
* :mod:`~fluxon_core.access.store` — :class:`AccessModelStore`, the typed API of an access store.
* :mod:`~fluxon_core.access.passwords` — salted slow password hashes (argon2id, scrypt).
* :mod:`~fluxon_fs.auth.tokens` — signed, expiring session tokens.
* :mod:`~fluxon_fs.auth.scopes` — export-relative paths, prefix matching and listing visibility.
* :mod:`~fluxon_fs.auth.identity` — :func:`login` and the :class:`Authorizer` every FS request goes through.
* :mod:`~fluxon_fs.cli.users` — ``fluxon users``.
"""
