"""The fs master web panel (starlette + jinja2, served by uvicorn in a thread of the fs master).

* :mod:`~fluxon_fs.fs_master.panel.backend` — :class:`PanelBackend`, the one interface to the fs master, and
  :class:`FsMasterPanelBackend`, its implementation over the master's components.
* :mod:`~fluxon_fs.fs_master.panel.app` — :func:`create_panel_app`.
* :mod:`~fluxon_fs.fs_master.panel.server` — :class:`PanelServer` and :func:`start_panel`.
* :mod:`~fluxon_fs.fs_master.panel.web` — request handling: sessions, CSRF, views and actions, errors.
* :mod:`~fluxon_fs.fs_master.panel.routes` — one module per feature. See docs/panel.md.
"""

from fluxon_fs.fs_master.panel.app import create_panel_app
from fluxon_fs.fs_master.panel.backend import FsMasterPanelBackend, PanelBackend
from fluxon_fs.fs_master.panel.server import PanelServer, start_panel
from fluxon_fs.fs_master.panel.settings import PanelSettings

__all__ = ["FsMasterPanelBackend", "PanelBackend", "PanelServer", "PanelSettings", "create_panel_app", "start_panel"]
