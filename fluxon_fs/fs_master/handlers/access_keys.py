"""``/fluxon_fs/auth/access_key``: S3 gateways verify SigV4 signatures without ever seeing a secret key.

A gateway asks for the signing key of (access key, day, region, service) — derived inside the access
store, useless for any other day, region or service — and gets with it a session token of the key's
user, so the agents apply exactly that user's scopes to what the gateway does for the request.
"""

from __future__ import annotations

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.protocols import AccessStore
from fluxon_fs.auth.delegation import DelegatedSessions, DelegationRefusedError
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.fs_master.handlers.table import HandlerTable
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.records import AccessKeySigningQuery, AccessKeySigningReply


class AccessKeyHandlers:
    """Signing keys of S3 access keys, for callers holding the FS service secret (``service_only``)."""

    def __init__(
        self,
        access_store: AccessStore,
        authorizer: Authorizer,
        sessions: DelegatedSessions,
        revocation_bound_s: float,
    ) -> None:
        self._access_store = access_store
        self._authorizer = authorizer
        self._sessions = sessions
        self._revocation_bound_s = revocation_bound_s

    def register_paths(self, table: HandlerTable) -> None:
        """Add this domain's handlers to ``table``."""
        table.add(calls.ACCESS_KEY_SIGNING, self.access_key_signing)

    def access_key_signing(self, _caller: str, query: AccessKeySigningQuery) -> AccessKeySigningReply:
        """The signing key and the user's token; ``exists`` False for an unknown (or revoked) key."""
        try:
            grant = self._access_store.access_key_signing_key(
                query.access_key_id, query.date, query.region, query.service
            )
        except InvalidArgumentError:
            grant = None  # a malformed scope cannot name a key; the gateway already refused the request's form
        if grant is None:
            return AccessKeySigningReply(False, valid_for_s=self._revocation_bound_s)
        version = self._authorizer.credential_version(grant.username)
        if version is None:
            return AccessKeySigningReply(False, valid_for_s=self._revocation_bound_s)
        try:
            token = self._sessions.token(grant.username, version)
        except DelegationRefusedError:
            return AccessKeySigningReply(False, valid_for_s=self._revocation_bound_s)
        return AccessKeySigningReply(True, grant.username, grant.signing_key.hex(), token, self._revocation_bound_s)
