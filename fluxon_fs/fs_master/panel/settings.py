"""How the panel behaves, derived from ``fluxon_fs.master_panel``."""

from __future__ import annotations

from urllib.parse import urlsplit

import attrs

from fluxon_core.addresses import is_wildcard_host, primary_host_address
from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.config import LoginProtectionConfig, MasterPanelConfig


@attrs.frozen
class PanelSettings:
    """Panel options.

    ``public_base_url`` prefixes the absolute links the UI shows (it never affects binding);
    session cookies get the ``Secure`` flag when it is ``https``. ``metrics_requires_login`` keeps
    ``/metrics`` public by default so Prometheus can scrape it without a session.
    ``login_protection`` throttles failed logins and bounds concurrent password checks;
    ``login_form_ttl_s`` is how long a login page's form may be submitted.
    """

    public_base_url: str
    auto_refresh_interval_secs: int = 5
    session_idle_timeout_s: float = 3600.0
    max_sessions: int = 10_000
    max_sessions_per_user: int = 32
    metrics_requires_login: bool = False
    max_listing_entries: int = 2000
    max_form_bytes: int = 64 * 1024
    login_protection: LoginProtectionConfig = attrs.Factory(LoginProtectionConfig)
    login_form_ttl_s: float = 3600.0

    def __attrs_post_init__(self) -> None:
        parts = urlsplit(self.public_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidArgumentError(f"public_base_url must be an http(s) URL, got {self.public_base_url!r}")
        if self.auto_refresh_interval_secs <= 0:
            raise InvalidArgumentError(f"auto_refresh_interval_secs must be > 0, got {self.auto_refresh_interval_secs}")

    @property
    def base_url(self) -> str:
        """``public_base_url`` without a trailing slash."""
        return self.public_base_url.rstrip("/")

    @property
    def cookie_secure(self) -> bool:
        """Send the session cookie over https only."""
        return urlsplit(self.public_base_url).scheme == "https"

    def absolute(self, path: str) -> str:
        """An absolute link to ``path`` (which starts with ``/``) under the public base URL."""
        return self.base_url + path

    @classmethod
    def from_config(cls, config: MasterPanelConfig, *, bound_addr: str | None = None) -> PanelSettings:
        """Settings of a ``master_panel`` section; without ``public_base_url`` links use the bind address
        (the host's primary address in place of a wildcard host such as ``0.0.0.0``)."""
        base = config.public_base_url or f"http://{_linkable(bound_addr or config.listen_addr)}"
        return cls(
            public_base_url=base,
            auto_refresh_interval_secs=config.auto_refresh_interval_secs,
            session_idle_timeout_s=float(config.session.token_ttl_s),
            login_protection=config.login_protection,
        )


def _linkable(addr: str) -> str:
    """``host:port`` other hosts can open: a wildcard host becomes the host's primary address."""
    host, _, port = addr.rpartition(":")
    return f"{primary_host_address()}:{port}" if is_wildcard_host(host.strip("[]")) else addr
