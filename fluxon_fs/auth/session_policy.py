"""The session policy of the fs master (``fluxon_fs.master_panel.session``)."""

from __future__ import annotations

import attrs

from fluxon_core.config.fields import config_field, positive

__all__ = ["SessionPolicyConfig"]


@attrs.frozen
class SessionPolicyConfig:
    """How long session tokens live and how quickly access changes reach running servers."""

    token_ttl_s: int = config_field(
        doc="lifetime of a session token issued at login; clients log in again after it.", default=3600, check=positive
    )
    revocation_bound_s: float = config_field(
        doc="longest time before a password change, user removal or grant change applies to open sessions.",
        default=2.0,
        check=positive,
    )
