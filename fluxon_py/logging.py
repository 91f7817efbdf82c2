"""``fluxon_py.logging``: ``FLUXON_LOG`` setup under the guide's import path."""

from __future__ import annotations

import logging
import os

from fluxon_core.log_setup import configure_logging, get_logger, level_from_env

__all__ = ["configure_logging", "get_logger", "init_logger", "level_from_env"]


def init_logger(log_path: str | os.PathLike[str] | None = None) -> logging.Logger:
    """Configure the ``fluxon`` logger tree from ``FLUXON_LOG`` (optionally also to ``log_path``) and return it."""
    configure_logging(log_path)
    return logging.getLogger("fluxon")
