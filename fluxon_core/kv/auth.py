"""RPC authentication of the KV plane: one secret per cluster, an HMAC token on every call.

Every member holds the cluster secret (the kv master creates it, owners read it from a file or
the coordinator, external clients from the owner's 0600 ``shared.json``). A call carries
``v1.<unix_ms>.<hex hmac-sha256(secret, caller \\n path \\n unix_ms)>`` in ``RpcCall.auth``;
every server checks it before any handler runs and refuses a bad, missing or stale token with
:class:`~fluxon_core.errors.PermissionDeniedError`. See docs/kv.md for what this does and does
not protect against.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import time
from hashlib import sha256
from pathlib import Path

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.rpc_types import RpcCall

TOKEN_VERSION = "v1"
MAX_CLOCK_SKEW_S = 300.0
SECRET_BYTES = 32


class SecretFileError(ValueError):
    """The secret file is unreadable, malformed or readable by other users."""


def _parse_secret(text: str, origin: str) -> bytes:
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        raise SecretFileError(f"{origin} does not hold a hex cluster secret") from None
    if len(secret) < 16:
        raise SecretFileError(f"{origin} holds a cluster secret shorter than 16 bytes")
    return secret


def read_secret_file(path: str | os.PathLike[str]) -> bytes:
    """The secret stored in ``path``; refuses a file that other users may read."""
    file_path = Path(path)
    try:
        mode = file_path.stat().st_mode
    except FileNotFoundError:
        raise SecretFileError(f"cluster secret file {file_path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(
            f"cluster secret file {file_path} is accessible by group/others (mode {oct(mode & 0o777)}); chmod 600 it"
        )
    return _parse_secret(file_path.read_text(encoding="ascii"), f"cluster secret file {file_path}")


def load_or_create_secret_file(path: str | os.PathLike[str]) -> bytes:
    """The secret in ``path``, creating it (mode 0600, parent 0700) with a fresh random secret when missing."""
    file_path = Path(path)
    if not file_path.exists():
        file_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(file_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
    return read_secret_file(file_path)


def write_secret_file(path: str | os.PathLike[str], secret: bytes) -> Path:
    """Write ``secret`` (hex) to ``path`` atomically with mode 0600 (parent created 0700); replaces a previous one."""
    file_path = Path(path)
    file_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = file_path.with_name(f".{file_path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret.hex() + "\n")
    os.replace(tmp, file_path)
    return file_path


def secret_from_hex(text: str, origin: str) -> bytes:
    """A secret carried as hex text (shared.json, coordinator)."""
    return _parse_secret(text, origin)


class RpcAuthenticator:
    """Makes and checks call tokens for one cluster secret."""

    def __init__(self, secret: bytes, *, max_clock_skew_s: float = MAX_CLOCK_SKEW_S) -> None:
        self._secret = bytes(secret)
        self._max_skew_ms = int(max_clock_skew_s * 1000)

    @property
    def secret_hex(self) -> str:
        """The secret as hex, for ``shared.json`` and the coordinator."""
        return self._secret.hex()

    def _mac(self, caller: str, path: str, stamp_ms: int) -> str:
        return hmac.new(self._secret, f"{caller}\n{path}\n{stamp_ms}".encode(), sha256).hexdigest()

    def token(self, caller: str, path: str) -> str:
        """The auth token for a call by ``caller`` to ``path`` now."""
        stamp_ms = int(time.time() * 1000)
        return f"{TOKEN_VERSION}.{stamp_ms}.{self._mac(caller, path, stamp_ms)}"

    def verify(self, call: RpcCall) -> None:
        """Raise PermissionDeniedError unless ``call.auth`` is a fresh token for ``call.caller`` and ``call.path``."""
        self.verify_token(call.auth, call.caller, call.path)

    def verify_token(self, token: str | None, caller: str, path: str, *, what: str = "cluster") -> None:
        """Raise PermissionDeniedError unless ``token`` is a fresh token of this secret for ``caller`` and ``path``.

        ``what`` names the secret in the refusal (``cluster``, ``service``).
        """
        parts = token.split(".") if token else []
        if len(parts) != 3 or parts[0] != TOKEN_VERSION or not parts[1].isdigit():
            raise PermissionDeniedError(f"RPC {path} refused: missing or malformed {what} auth token")
        stamp_ms = int(parts[1])
        if abs(int(time.time() * 1000) - stamp_ms) > self._max_skew_ms:
            raise PermissionDeniedError(
                f"RPC {path} refused: {what} auth token is stale or from the future (check the hosts' clocks)"
            )
        if not hmac.compare_digest(parts[2], self._mac(caller, path, stamp_ms)):
            raise PermissionDeniedError(
                f"RPC {path} refused: auth token does not match this {what}'s secret (caller {caller!r})"
            )
