"""What a panel user may see and do, decided by the fs master's :class:`Authorizer`.

Browsing and downloads follow the FS rules exactly (the same calls the agents make). Transfers
follow the rules of :mod:`fluxon_fs.fs_master.job_access`, the same for the panel, the CLI and the
Python API (documented in docs/panel.md and docs/transfers.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.fs_master.job_access import allowed
from fluxon_fs.fs_master.panel.web import PanelUser


def visible_exports(user: PanelUser, authorizer: Authorizer, export_names: Iterable[str]) -> list[str]:
    """Exports whose root the user may list (all of them for users who can manage users)."""
    names = sorted(export_names)
    if user.can_manage_users:
        return names
    return [name for name in names if may_list(user, authorizer, name, "")]


def may_list(user: PanelUser, authorizer: Authorizer, export_name: str, dir_path: str) -> bool:
    """True when ``user`` may list (part of) directory ``dir_path`` of ``export_name``."""
    return allowed(lambda: authorizer.authorize_listing(user.access_token, export_name, dir_path))


def may_read(user: PanelUser, authorizer: Authorizer, export_name: str, path: str) -> bool:
    """True when ``user`` may read ``path`` of ``export_name``."""
    return allowed(lambda: authorizer.authorize(user.access_token, export_name, path, is_write=False))
