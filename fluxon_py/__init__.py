"""The upstream-compatible surface: code written against the published Fluxon guides runs unchanged.

``from fluxon_py import FluxonKvClientConfig, new_store`` and the rest of :mod:`fluxon_py.kvclient`;
the FS API is :mod:`fluxon_py.fluxon_fs`, role processes :mod:`fluxon_py.runtime`, logging
:mod:`fluxon_py.logging`. The native, idiomatic API lives in :mod:`fluxon_core` and :mod:`fluxon_fs`.
"""

from fluxon_py.kvclient import *  # noqa: F403
from fluxon_py.kvclient import __all__  # noqa: F401
