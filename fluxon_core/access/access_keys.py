"""S3 access keys: a user's key id and secret for AWS Signature V4, and the signing key derived from it.

A key pair is created for one user; the secret is shown once, at creation, and afterwards never
leaves the access store: whoever verifies a signature asks the store (through the fs master) for
the *signing key* of one access key, day, region and service — an HMAC chain over the secret
that is useless for any other day, region or service — and checks the signature with that.

Key ids look like AWS ones (20 upper-case letters and digits, here starting ``FX``); secrets are
40 URL-safe characters (240 random bits).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

import attrs

from fluxon_core.errors import InvalidArgumentError

ACCESS_KEY_ID_PREFIX = "FX"
ACCESS_KEY_ID_CHARS = 20
SECRET_ACCESS_KEY_BYTES = 30
MAX_ACCESS_KEYS_PER_USER = 10
"""More than this many live keys for one user is refused (rotate by revoking first)."""

_ID_ALPHABET = string.ascii_uppercase + string.digits
_ACCESS_KEY_ID = re.compile(rf"^{ACCESS_KEY_ID_PREFIX}[A-Z0-9]{{{ACCESS_KEY_ID_CHARS - len(ACCESS_KEY_ID_PREFIX)}}}$")
_SCOPE_DATE = re.compile(r"^[0-9]{8}$")
_SCOPE_WORD = re.compile(r"^[a-z0-9-]{1,64}$")


@attrs.frozen
class AccessKeyRecord:
    """An access key as listed: never its secret."""

    access_key_id: str
    username: str
    created_at: float


@attrs.frozen(repr=False)
class NewAccessKey:
    """A key just created, with the secret the user must copy now: it is never shown again."""

    record: AccessKeyRecord
    secret_access_key: str

    def __repr__(self) -> str:
        # Records end up in logs and tracebacks; the secret must not.
        return f"NewAccessKey(record={self.record!r}, secret_access_key='***')"


@attrs.frozen(repr=False)
class SigningKeyGrant:
    """The SigV4 signing key of one access key for one (day, region, service), and whose key it is."""

    access_key_id: str
    username: str
    signing_key: bytes

    def __repr__(self) -> str:
        return f"SigningKeyGrant(access_key_id={self.access_key_id!r}, username={self.username!r}, signing_key=***)"


def new_access_key_id() -> str:
    """A fresh random access key id."""
    body = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ACCESS_KEY_ID_CHARS - len(ACCESS_KEY_ID_PREFIX)))
    return ACCESS_KEY_ID_PREFIX + body


def new_secret_access_key() -> str:
    """A fresh random secret access key."""
    return secrets.token_urlsafe(SECRET_ACCESS_KEY_BYTES)


def is_access_key_id(value: object) -> bool:
    """True when ``value`` has the shape of an access key id this store issues."""
    return isinstance(value, str) and _ACCESS_KEY_ID.match(value) is not None


def check_access_key_id(value: object) -> str:
    """``value`` when it is a well-formed access key id; InvalidArgumentError otherwise."""
    if not is_access_key_id(value):
        raise InvalidArgumentError(
            f"access key id must be {ACCESS_KEY_ID_CHARS} upper-case letters and digits starting "
            f"{ACCESS_KEY_ID_PREFIX!r}, got {value!r}"
        )
    assert isinstance(value, str)
    return value


def check_signing_scope(date: object, region: object, service: object) -> None:
    """Refuse a credential scope that is not ``YYYYMMDD``, a region name and a service name."""
    if not isinstance(date, str) or _SCOPE_DATE.match(date) is None:
        raise InvalidArgumentError(f"signing date must be YYYYMMDD, got {date!r}")
    for what, value in (("region", region), ("service", service)):
        if not isinstance(value, str) or _SCOPE_WORD.match(value) is None:
            raise InvalidArgumentError(f"signing {what} must be 1-64 lower-case letters, digits or '-', got {value!r}")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sigv4_signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The AWS Signature V4 signing key: HMAC-SHA256 over ``aws4_request``, service, region and date."""
    check_signing_scope(date, region, service)
    key = _hmac(("AWS4" + secret_access_key).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")
