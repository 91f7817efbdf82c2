"""The FS service credential: what lets the fs master and fs agents act as the system.

Every process attached to the KV plane holds the cluster secret (an external client reads it from
its host's ``shared.json``), so the cluster secret proves membership, never authority. Acting as the
system — registering exports, claiming transfer batches, reading users' grants, calling an agent
without a user's session token — needs the **service secret** instead: a separate random key in a
0600 file (``fluxon_fs.service_secret_file``) that only the fs master and fs agents are given. The
fs master creates it when missing; an agent refuses to start without it. Calls carry
``v1.<unix_ms>.<hmac-sha256(secret, caller \\n path \\n unix_ms)>`` (the KV plane's token format,
under a different key), so a token is bound to its caller, its path and a short time window.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from fluxon_core.errors import InvalidArgumentError, PermissionDeniedError
from fluxon_core.kv.auth import RpcAuthenticator, SecretFileError, load_or_create_secret_file, read_secret_file


class ServiceCredential:
    """Signs service tokens with one secret; checks them against it and any ``also_accepted`` secrets.

    Accepting extra secrets is what lets the secret be rotated with rolling restarts (docs/security.md).
    """

    def __init__(self, secret: bytes, also_accepted: Sequence[bytes] = ()) -> None:
        self._authenticator = RpcAuthenticator(secret)
        self._accepted = [self._authenticator, *(RpcAuthenticator(extra) for extra in also_accepted)]

    @property
    def authenticator(self) -> RpcAuthenticator:
        """The token maker and checker (``token(caller, path)``, ``verify(call)``)."""
        return self._authenticator

    def signer(self, caller: str) -> Callable[[str], str]:
        """``auth(path)`` for service calls made by ``caller``."""
        return lambda path: self._authenticator.token(caller, path)

    def verify(self, token: str | None, caller: str, path: str) -> None:
        """Raise PermissionDeniedError unless ``token`` is a fresh service token of ``caller`` for ``path``."""
        refusal: PermissionDeniedError | None = None
        for authenticator in self._accepted:
            try:
                authenticator.verify_token(token, caller, path, what="service")
                return
            except PermissionDeniedError as exc:
                refusal = refusal or exc
        assert refusal is not None
        raise refusal


def create_service_credential(
    path: str | os.PathLike[str], also_accepted: Sequence[str | os.PathLike[str]] = ()
) -> ServiceCredential:
    """The fs master's credential: the secret in ``path``, created (0600, parent 0700) when missing."""
    try:
        return ServiceCredential(load_or_create_secret_file(path), _accepted(also_accepted))
    except SecretFileError as exc:
        raise InvalidArgumentError(f"fluxon_fs.service_secret_file: {exc}") from None


def read_service_credential(
    path: str | os.PathLike[str], also_accepted: Sequence[str | os.PathLike[str]] = ()
) -> ServiceCredential:
    """An fs agent's credential: the secret the fs master created, copied to this host (0600)."""
    try:
        return ServiceCredential(read_secret_file(path), _accepted(also_accepted))
    except SecretFileError as exc:
        raise InvalidArgumentError(
            f"fluxon_fs.service_secret_file: {exc}. An fs agent needs the fs master's service secret: copy "
            "that file to this host with mode 0600 (docs/security.md)"
        ) from None


def _accepted(paths: Sequence[str | os.PathLike[str]]) -> list[bytes]:
    secrets = []
    for path in paths:
        try:
            secrets.append(read_secret_file(path))
        except SecretFileError as exc:
            raise InvalidArgumentError(f"fluxon_fs.service_secret_accept_files: {exc}") from None
    return secrets
