"""An export's operations inside its agent, authorised exactly as its RPC endpoint authorises them.

Code running in an fs agent on behalf of a user — a transfer worker copying a batch for the job's
owner — must not reach :class:`~fluxon_fs.export.serving.local_ops.LocalExportOps` directly: that
would bypass the user's scopes and the re-authorisation of a symlink on its real path.
:class:`AuthorizedExportOps` hands every call to
:func:`~fluxon_fs.export.serving.rpc_service.run_authorized` with the user's token, as the RPC
endpoint does for a request, and skips only the encoding and the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_fs.export.ops import ExportOpsByName
from fluxon_fs.export.serving.rpc_service import Authorize, ServableExportOps, run_authorized
from fluxon_fs.export.wire import OPS, op_path

_NO_MESSAGE = RpcMessage()


class AuthorizedExportOps(ExportOpsByName):
    """``ops`` of ``export_name`` as the holder of ``auth()``'s token, checked by the agent's ``authorize``.

    ``auth`` is called for every operation, so a token refreshed meanwhile is used at once; ``caller``
    names this process in the checks (as an RPC caller would be named).
    """

    def __init__(
        self,
        ops: ServableExportOps,
        export_name: str,
        authorize: Authorize,
        auth: Callable[[], str],
        *,
        caller: str,
    ) -> None:
        self._ops = ops
        self.export_name = export_name
        self._authorize = authorize
        self._auth = auth
        self._caller = caller
        self._paths = {name: op_path(export_name, name) for name in OPS}

    def _call(self, op: str, **args: Any) -> Any:
        call = RpcCall(self._paths[op], self._caller, self._auth(), _NO_MESSAGE, math.inf)
        return run_authorized(call, self.export_name, OPS[op], self._ops, self._authorize, args)
