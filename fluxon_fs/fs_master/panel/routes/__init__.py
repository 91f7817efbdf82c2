"""The panel's routes, one module per feature.

Modules declaring :class:`~fluxon_fs.fs_master.panel.web.View` / :class:`~fluxon_fs.fs_master.panel.web.Action` lists
(``VIEWS``, ``ACTIONS``) are listed in :data:`FEATURE_MODULES`; ``auth`` and ``metrics`` build
their own routes because they sit outside the logged-in request flow.
"""

from __future__ import annotations

from fluxon_fs.fs_master.panel.routes import exports, keys, overview, scopes, transfers, users

FEATURE_MODULES = (overview, exports, users, keys, scopes, transfers)
