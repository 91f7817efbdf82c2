"""The access-store contract every access backend and every user of one shares.

* :mod:`~fluxon_core.access.records` — what a store returns: users, scope grants, a user's access,
  and the canonical form of a scope prefix;
* :mod:`~fluxon_core.protocols` — :class:`~fluxon_core.protocols.AccessStore`, the typed API
  of an access store (``kind:`` selected under ``fluxon_fs.master_panel.access_store``);
* :mod:`~fluxon_core.access.bootstrap` — the ``bootstrap_access_model`` config seeded into an empty store;
* :mod:`~fluxon_core.access.passwords` — salted slow password hashes (argon2id, scrypt).
"""
