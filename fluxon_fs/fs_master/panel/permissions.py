"""What a panel user may see and do, decided by the fs master's :class:`Authorizer`.

Browsing and downloads follow the FS rules exactly (the same calls the agents make). Transfers
(decided here, documented in docs/panel.md): users who can manage users may run any transfer;
anyone else needs read access to the source folder and read_write access to the target prefix,
and sees, controls and imports only jobs and pre-scans that satisfy the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fluxon_core.errors import ApiError
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.fs_master.panel.web import PanelUser
from fluxon_fs.transfer.jobs import JobSpec


def allowed(check: Callable[[], object]) -> bool:
    """True when ``check()`` returns, False when it refuses (any typed error, e.g. a bad path)."""
    try:
        check()
    except ApiError:
        return False
    return True


def visible_exports(user: PanelUser, authorizer: Authorizer, export_names: Iterable[str]) -> list[str]:
    """Exports whose root the user may list (all of them for users who can manage users)."""
    names = sorted(export_names)
    if user.can_manage_users:
        return names
    return [name for name in names if may_list(user, authorizer, name, "")]


def may_list(user: PanelUser, authorizer: Authorizer, export_name: str, dir_path: str) -> bool:
    """True when ``user`` may list (part of) directory ``dir_path`` of ``export_name``."""
    return allowed(lambda: authorizer.authorize_listing(user.access_token, export_name, dir_path))


def authorize_transfer(user: PanelUser, authorizer: Authorizer, spec: JobSpec) -> None:
    """Allow ``spec`` for ``user`` or raise :class:`PermissionDeniedError` naming what is missing."""
    if user.can_manage_users:
        return
    authorizer.authorize(user.access_token, spec.source_export, spec.source_dir, is_write=False)
    authorizer.authorize(user.access_token, spec.target_export, spec.target_prefix, is_write=True)


def may_transfer(user: PanelUser, authorizer: Authorizer, spec: JobSpec) -> bool:
    """:func:`authorize_transfer` as a yes/no."""
    return allowed(lambda: authorize_transfer(user, authorizer, spec))


def may_read(user: PanelUser, authorizer: Authorizer, export_name: str, path: str) -> bool:
    """True when ``user`` may read ``path`` of ``export_name``."""
    return allowed(lambda: authorizer.authorize(user.access_token, export_name, path, is_write=False))
