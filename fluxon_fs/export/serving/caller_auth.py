"""Who is calling an export operation: a user session token, or a cluster member acting for the system.

User requests carry the session token from ``set_request_identity`` (``fx1.…``). Internal calls
(transfer workers, the fs master browsing for the panel) carry a cluster token made with the KV
plane's cluster secret for exactly that caller and path; only processes attached to the cluster
hold that secret.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.kv import KvClient
from fluxon_core.kv.auth import RpcAuthenticator
from fluxon_core.rpc_types import RpcCall
from fluxon_fs.auth.identity import Authorizer

USER_TOKEN_PREFIX = "fx1."

EntryFilter = Callable[[str], bool]


def cluster_authenticator(store: KvClient) -> RpcAuthenticator:
    """The cluster-secret signer of a store's KV membership."""
    return store.cluster_authenticator()


def service_auth(store: KvClient) -> Callable[[str], str]:
    """``auth(path)`` for internal export calls made by ``store``'s process."""
    authenticator = cluster_authenticator(store)
    caller = store.instance_key()
    return lambda path: authenticator.token(caller, path)


def export_authorizer(
    authorizer: Authorizer, cluster: RpcAuthenticator
) -> Callable[[RpcCall, str, str, Sequence[str], bool], EntryFilter | None]:
    """The agent's ``authorize`` hook: cluster members may do anything; users per their scopes."""

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
                cluster.verify(call)
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
