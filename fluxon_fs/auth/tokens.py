"""Signed, expiring session tokens: the password is checked once at login, then every call carries a token.

Format (ASCII, URL-safe, no padding)::

    fx1.<base64url(payload JSON)>.<base64url(HMAC-SHA256(secret, "fx1." + payload part))>

The payload is compact JSON ``{"u": username, "iat": issued_at, "exp": expires_at, "cv": credential_version}``
with times in whole Unix seconds. The MAC covers the version tag and the encoded payload exactly as sent, so
any changed byte is refused before the payload is decoded. ``cv`` lets the server refuse tokens issued
before the user's password last changed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import attrs

from fluxon_core.errors import InvalidArgumentError, PermissionDeniedError

TOKEN_VERSION = "fx1"
MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 2048

INVALID_TOKEN_MESSAGE = "permission denied: invalid session token"
EXPIRED_TOKEN_MESSAGE = "permission denied: session token expired; log in again"


@attrs.frozen
class TokenClaims:
    """What a verified token says."""

    username: str
    issued_at: int
    expires_at: int
    credential_version: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies session tokens with one server secret.

    ``clock`` returns Unix time in seconds (injectable so tests can move time). Tokens claiming to be
    issued more than ``max_clock_skew_s`` in the future are refused as forged or from a broken clock.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        ttl_s: int = 3600,
        clock: Callable[[], float] = time.time,
        max_clock_skew_s: int = 60,
    ) -> None:
        if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
            raise InvalidArgumentError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")
        if ttl_s <= 0:
            raise InvalidArgumentError(f"token ttl_s must be > 0, got {ttl_s}")
        self._secret = bytes(secret)
        self.ttl_s = int(ttl_s)
        self._clock = clock
        self._max_skew_s = max_clock_skew_s

    def _mac(self, signed_part: str) -> str:
        return _b64(hmac.new(self._secret, signed_part.encode("ascii"), hashlib.sha256).digest())

    def issue(self, username: str, credential_version: int) -> str:
        """A token for ``username`` valid for ``ttl_s`` from now."""
        now = int(self._clock())
        payload = {"u": username, "iat": now, "exp": now + self.ttl_s, "cv": int(credential_version)}
        encoded = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        signed_part = f"{TOKEN_VERSION}.{encoded}"
        return f"{signed_part}.{self._mac(signed_part)}"

    def verify(self, token: str) -> TokenClaims:
        """The claims of a genuine, unexpired token; anything else raises :class:`PermissionDeniedError`."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise PermissionDeniedError(INVALID_TOKEN_MESSAGE)
        signed_part, _, mac = token.rpartition(".")
        version, _, encoded = signed_part.partition(".")
        if version != TOKEN_VERSION or not encoded or "." in encoded:
            raise PermissionDeniedError(INVALID_TOKEN_MESSAGE)
        if not hmac.compare_digest(self._mac(signed_part).encode("ascii"), mac.encode("ascii")):
            raise PermissionDeniedError(INVALID_TOKEN_MESSAGE)
        claims = _decode_claims(encoded)
        now = self._clock()
        if claims.issued_at > now + self._max_skew_s:
            raise PermissionDeniedError(INVALID_TOKEN_MESSAGE)
        if now >= claims.expires_at:
            raise PermissionDeniedError(EXPIRED_TOKEN_MESSAGE)
        return claims


def _decode_claims(encoded: str) -> TokenClaims:
    # Only reached with a valid MAC, so a failure here means a signer bug or a leaked secret.
    try:
        payload = json.loads(_unb64(encoded))
    except (binascii.Error, ValueError):
        raise PermissionDeniedError(INVALID_TOKEN_MESSAGE) from None
    if not isinstance(payload, dict):
        raise PermissionDeniedError(INVALID_TOKEN_MESSAGE)
    username = payload.get("u")
    numbers = [payload.get(key) for key in ("iat", "exp", "cv")]
    if not isinstance(username, str) or not username:
        raise PermissionDeniedError(INVALID_TOKEN_MESSAGE)
    if any(isinstance(n, bool) or not isinstance(n, int) for n in numbers):
        raise PermissionDeniedError(INVALID_TOKEN_MESSAGE)
    issued_at, expires_at, version = (int(n) for n in numbers)  # type: ignore[arg-type]
    return TokenClaims(username, issued_at, expires_at, version)
