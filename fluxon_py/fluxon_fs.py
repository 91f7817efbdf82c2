"""``fluxon_py.fluxon_fs``: the public FS API under the guide's import path."""

from fluxon_fs.api import *  # noqa: F403
from fluxon_fs.api import __all__  # noqa: F401
