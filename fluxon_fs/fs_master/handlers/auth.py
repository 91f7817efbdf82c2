"""``/fluxon_fs/auth/*``: how agents check identities without holding the token secret or the access db."""

from __future__ import annotations

from fluxon_core.protocols import AccessStore
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.login_limits import LoginThrottle, PasswordCheckPool
from fluxon_fs.auth.tokens import TokenClaims, TokenSigner
from fluxon_fs.config import LoginProtectionConfig
from fluxon_fs.fs_master.handlers.table import HandlerTable
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.records import (
    AuthEpochQuery,
    AuthEpochReply,
    Login,
    LoginReply,
    TokenVerification,
    UserAccessQuery,
    UserAccessReply,
)


class AuthHandlers:
    """Logins, token verification, users' access and the access epoch, answered from the master's access db."""

    def __init__(
        self,
        authorizer: Authorizer,
        signer: TokenSigner,
        access_store: AccessStore,
        revocation_bound_s: float,
        login_protection: LoginProtectionConfig,
    ) -> None:
        self._authorizer = authorizer
        self._signer = signer
        self._access_store = access_store
        self._revocation_bound_s = revocation_bound_s
        self._throttle = LoginThrottle(login_protection)
        self._password_checks = PasswordCheckPool(
            login_protection.max_concurrent_password_checks, login_protection.password_check_wait_s
        )

    def register_paths(self, table: HandlerTable) -> None:
        """Add this domain's handlers to ``table``."""
        table.add(calls.LOGIN, self.login)
        table.add(calls.VERIFY_TOKEN, self.verify_token)
        table.add(calls.USER_ACCESS, self.user_access)
        table.add(calls.AUTH_EPOCH, self.auth_epoch)

    def login(self, caller: str, login: Login) -> LoginReply:
        """A session token for a valid password (``PermissionDeniedError`` otherwise).

        Throttled like the panel's login, the calling member counting as the client address, and run
        on the bounded password-check threads: any member of the KV plane can call this.
        """
        with self._throttle.attempt(login.username, f"member:{caller}") as attempt:
            token = self._password_checks.run(lambda: self._authorizer.login(login.username, login.password))
            attempt.succeeded()
        return LoginReply(token, self._signer.verify(token).expires_at)

    def close(self) -> None:
        """Stop the password-check threads."""
        self._password_checks.close()

    def verify_token(self, _caller: str, verification: TokenVerification) -> TokenClaims:
        """The claims of a valid token (``PermissionDeniedError`` otherwise)."""
        return self._signer.verify(verification.token)

    def user_access(self, _caller: str, query: UserAccessQuery) -> UserAccessReply:
        """A user's access as the access db holds it now."""
        return UserAccessReply.of(self._access_store.user_access(query.username))

    def auth_epoch(self, _caller: str, _query: AuthEpochQuery) -> AuthEpochReply:
        """The access epoch, with this master's revocation bound."""
        # Agents re-read the epoch at this master's bound, so the configured bound holds on them too.
        return AuthEpochReply(self._access_store.auth_epoch(), self._revocation_bound_s)
