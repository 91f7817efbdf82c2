"""Signing keys of access keys, asked of the fs master and reused for its revocation bound.

The gateway holds no secret access key and no access db: for each (access key, day, region,
service) it asks the fs master (a service-only call, :mod:`fluxon_fs.fs_master.handlers.access_keys`)
for the derived signing key and a session token of the key's user. The answer — including "no such
key" — is reused for the bound the master names, so a revoked key or a removed user stops working
within it, as a changed password does for mounts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import attrs

from fluxon_core.errors import ApiError
from fluxon_core.log_setup import get_logger
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import AccessKeySigningQuery
from fluxon_fs.s3_gateway.errors import S3Error
from fluxon_fs.s3_gateway.sigv4 import CredentialScope

log = get_logger("fluxon.s3.credentials")

MAX_CACHED_SCOPES = 4096
NEGATIVE_VALID_FOR_S = 2.0
"""How long "no such key" is remembered when the master names no bound (unknown ids cost one call each)."""


@attrs.frozen(repr=False)
class KeyHolder:
    """Whose key signed a request, the signing key to check it with, and the user's session token."""

    username: str
    signing_key: bytes
    token: str

    def __repr__(self) -> str:
        return f"KeyHolder(username={self.username!r}, ...)"


@attrs.frozen
class _Cached:
    holder: KeyHolder | None
    until: float


class SigningKeys:
    """``holder(scope)``: the key's holder, or ``InvalidAccessKeyId``; thread-safe, cached per scope."""

    def __init__(self, link: FsMasterLink, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._link = link
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, str, str], _Cached] = OrderedDict()

    def cached(self, scope: CredentialScope) -> KeyHolder | None:
        """The holder when a fresh answer is cached (``InvalidAccessKeyId`` for a known refusal), else None.

        Never blocks on the fs master, so the event loop may call it.
        """
        key = (scope.access_key_id, scope.date, scope.region, scope.service)
        with self._lock:
            cached = self._cache.get(key)
            if cached is None or self._clock() >= cached.until:
                return None
            self._cache.move_to_end(key)
        return _known(cached.holder)

    def holder(self, scope: CredentialScope) -> KeyHolder:
        """Who holds ``scope.access_key_id`` and its signing key for the scope's day, region and service."""
        known = self.cached(scope)
        if known is not None:
            return known
        key = (scope.access_key_id, scope.date, scope.region, scope.service)
        now = self._clock()
        try:
            reply = self._link.access_key_signing(AccessKeySigningQuery(*key))
        except ApiError as exc:
            log.warning("fs master did not answer for access key %s: %s", scope.access_key_id, exc)
            raise S3Error("ServiceUnavailable", "the fs master did not answer; try again") from exc
        holder = KeyHolder(reply.username, bytes.fromhex(reply.signing_key), reply.token) if reply.exists else None
        with self._lock:
            self._cache[key] = _Cached(holder, now + (reply.valid_for_s or NEGATIVE_VALID_FOR_S))
            while len(self._cache) > MAX_CACHED_SCOPES:
                self._cache.popitem(last=False)
        return _known(holder)


def _known(holder: KeyHolder | None) -> KeyHolder:
    if holder is None:
        raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    return holder
