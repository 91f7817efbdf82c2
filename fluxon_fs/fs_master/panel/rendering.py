"""Jinja2 rendering of panel pages: one environment, autoescaped, strict about missing variables."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from fluxon_fs.fs_master.panel.settings import PanelSettings
from fluxon_fs.transfer.states import JobState, PrescanState

if TYPE_CHECKING:
    from fluxon_fs.fs_master.panel.login_sessions import PanelSession
    from fluxon_fs.fs_master.panel.web import PanelUser

TEMPLATES_DIR = Path(__file__).parent / "templates"

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(value: Any) -> str:
    """``1536`` → ``1.5 KiB``; non-numbers are shown as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    amount = float(value)
    for unit in _BYTE_UNITS:
        if abs(amount) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)  # unreachable: the loop returns at the last unit


def wall_time(value: Any) -> str:
    """Unix seconds → ``YYYY-MM-DD HH:MM:SS`` (local time); 0 or missing → empty."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def percent(value: Any) -> str:
    """A fraction 0..1 as ``42.0%``; None → ``n/a``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a"
    return f"{100.0 * value:.1f}%"


class Renderer:
    """Renders templates with the globals every page uses (user, CSRF token, flashes, settings)."""

    def __init__(self, settings: PanelSettings) -> None:
        self._settings = settings
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["bytes"] = human_bytes
        self.env.filters["walltime"] = wall_time
        self.env.filters["percent"] = percent
        # Templates compare states and ask what a state allows through the enums, like the code does.
        self.env.globals.update(JobState=JobState, PrescanState=PrescanState)

    def render(
        self,
        template: str,
        data: dict[str, Any],
        *,
        user: PanelUser | None,
        session: PanelSession | None,
        keep_flashes: bool = False,
        csrf_token: str = "",
    ) -> str:
        """HTML of ``template`` with ``data`` plus the page globals.

        The session's flash messages are shown and removed, except with ``keep_flashes`` (a background
        refresh, which must not swallow a message meant for the next page the user opens). Pages
        without a session (the login page) pass their own ``csrf_token``.
        """
        show_flashes = session is not None and not keep_flashes
        context = {
            **data,
            "data": data,
            "user": user,
            "csrf_token": session.csrf_token if session is not None else csrf_token,
            "flashes": session.take_flashes() if show_flashes and session is not None else [],
            "settings": self._settings,
            "refresh_secs": self._settings.auto_refresh_interval_secs,
        }
        return self.env.get_template(template).render(context)
