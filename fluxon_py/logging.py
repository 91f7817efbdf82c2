"""``fluxon_py.logging``: ``FLUXON_LOG`` setup under the guide's import path."""

from fluxon_core.log_setup import configure_logging, get_logger, level_from_env

__all__ = ["configure_logging", "get_logger", "level_from_env"]
