"""``fluxon_py.fluxon_fs``: the public FS API under the guide's import path."""

from fluxon_fs.public_api import *  # noqa: F403
from fluxon_fs.public_api import __all__  # noqa: F401
