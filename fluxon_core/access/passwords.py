"""Salted slow password hashes in self-describing strings, so parameters can change without a migration.

* argon2id (argon2-cffi): ``$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`` — OWASP's first argon2id
  profile (19 MiB, 2 passes, 1 lane), a few tens of milliseconds per login.
* scrypt (standard library): ``$scrypt$ln=17,r=8,p=1$<salt>$<hash>`` — OWASP's scrypt minimum
  (N=2^17, 128 MiB), for installations without argon2-cffi.

A stored hash is verified with the algorithm and parameters it names, whatever the store's current
choice for new hashes is.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import threading
from typing import Any

from fluxon_core.errors import InvalidArgumentError

ARGON2ID_TIME_COST = 2
ARGON2ID_MEMORY_KIB = 19456
ARGON2ID_PARALLELISM = 1
SCRYPT_LOG2_N = 17
SCRYPT_BLOCK_SIZE = 8
SCRYPT_PARALLELISM = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_PASSWORD_CHARS = 4096


class PasswordAlgorithm(enum.Enum):
    """Algorithms for new password hashes."""

    ARGON2ID = "argon2id"
    SCRYPT = "scrypt"


def _argon2_hasher() -> Any:
    try:
        import argon2
    except ImportError:
        raise InvalidArgumentError(
            "password hash argon2id needs the argon2-cffi package (pip install 'fluxon[panel]'); "
            "install it or choose password_hash: scrypt"
        ) from None
    return argon2.PasswordHasher(
        time_cost=ARGON2ID_TIME_COST,
        memory_cost=ARGON2ID_MEMORY_KIB,
        parallelism=ARGON2ID_PARALLELISM,
        hash_len=HASH_BYTES,
        salt_len=SALT_BYTES,
        type=argon2.Type.ID,
    )


def require_available(algorithm: PasswordAlgorithm) -> None:
    """Fail now, with what to install, when ``algorithm`` cannot run in this process."""
    if algorithm is PasswordAlgorithm.ARGON2ID:
        _argon2_hasher()


def check_new_password(password: str) -> None:
    """Refuse passwords that must never be stored (empty, not a string, absurdly long)."""
    if not isinstance(password, str):
        raise InvalidArgumentError(f"password must be a string, got {type(password).__name__}")
    if not password:
        raise InvalidArgumentError("password must not be empty")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidArgumentError(f"password must be at most {MAX_PASSWORD_CHARS} characters")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    # scrypt needs 128*N*r bytes (+ slack); OpenSSL refuses by default above 32 MiB.
    maxmem = 128 * n * r * p + (32 << 20)
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=HASH_BYTES)


def hash_password(password: str, algorithm: PasswordAlgorithm) -> str:
    """A new salted hash of ``password``."""
    check_new_password(password)
    if algorithm is PasswordAlgorithm.ARGON2ID:
        return str(_argon2_hasher().hash(password))
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_LOG2_N, SCRYPT_BLOCK_SIZE, SCRYPT_PARALLELISM)
    params = f"ln={SCRYPT_LOG2_N},r={SCRYPT_BLOCK_SIZE},p={SCRYPT_PARALLELISM}"
    return f"$scrypt${params}${_b64(salt)}${_b64(digest)}"


def _verify_scrypt(stored_hash: str, password: str) -> bool:
    parts = stored_hash.split("$")
    if len(parts) != 5 or parts[0] != "":
        raise ValueError("malformed scrypt hash")
    params = dict(item.split("=", 1) for item in parts[2].split(","))
    log2_n, r, p = int(params["ln"]), int(params["r"]), int(params["p"])
    if not (1 <= log2_n <= 22 and 1 <= r <= 64 and 1 <= p <= 16):
        raise ValueError("scrypt hash parameters out of range")
    salt, expected = _unb64(parts[3]), _unb64(parts[4])
    return hmac.compare_digest(_scrypt(password, salt, log2_n, r, p), expected)


def verify_password_hash(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; a malformed stored hash raises ValueError."""
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_CHARS:
        return False
    if stored_hash.startswith("$argon2id$"):
        import argon2.exceptions

        try:
            return bool(_argon2_hasher().verify(stored_hash, password))
        except argon2.exceptions.VerifyMismatchError:
            return False
        except argon2.exceptions.InvalidHashError as exc:
            raise ValueError(f"malformed argon2id hash: {exc}") from None
    if stored_hash.startswith("$scrypt$"):
        try:
            return _verify_scrypt(stored_hash, password)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"malformed scrypt hash: {exc}") from None
    raise ValueError("stored hash names an unknown algorithm")


_decoys: dict[PasswordAlgorithm, str] = {}
_decoys_lock = threading.Lock()


def spend_verify_time(algorithm: PasswordAlgorithm, password: str) -> None:
    """Do the work of one verification against a decoy hash.

    Called for unknown usernames so a failed login takes as long whether the user or the password
    was wrong.
    """
    with _decoys_lock:
        decoy = _decoys.get(algorithm)
        if decoy is None:
            decoy = _decoys[algorithm] = hash_password(secrets.token_urlsafe(16), algorithm)
    verify_password_hash(decoy, password or "-")
