"""Who is calling an export operation: a user session token, or an FS service acting as the system.

User requests carry the session token from ``set_request_identity`` (``fx1.…``) and are authorised
by that user's scopes. Calls without a user token must carry a *service* token of the caller for
exactly that path (:mod:`fluxon_fs.auth.service`); only the fs master and fs agents hold the
service secret. The KV plane's cluster secret, which every mounting process can read on its host,
grants nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.rpc_types import RpcCall
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.service import ServiceCredential

USER_TOKEN_PREFIX = "fx1."

EntryFilter = Callable[[str], bool]


def export_authorizer(
    authorizer: Authorizer, service: ServiceCredential
) -> Callable[[RpcCall, str, str, Sequence[str], bool], EntryFilter | None]:
    """The agent's ``authorize`` hook: FS services may do anything; users per their scopes."""

    def authorize(
        call: RpcCall, export_name: str, op: str, relpaths: Sequence[str], is_write: bool
    ) -> EntryFilter | None:
        token = call.auth or ""
        if not token.startswith(USER_TOKEN_PREFIX):
            if not token:
                raise PermissionDeniedError(
                    f"permission denied: no identity on {op} in export {export_name!r}; call set_request_identity first"
                )
            try:
                service.verify(token, call.caller, call.path)
            except PermissionDeniedError as exc:  # worded like every other refusal of an FS request
                raise PermissionDeniedError(f"permission denied: {exc.message}") from None
            return None
        if op == "list_dir":
            visibility = authorizer.authorize_listing(token, export_name, relpaths[0])
            return None if visibility.everything else visibility.shows
        for relpath in relpaths:
            if op == "stat" and not is_write:
                authorizer.authorize_lookup(token, export_name, relpath)
            else:
                authorizer.authorize(token, export_name, relpath, is_write=is_write)
        return None

    return authorize
