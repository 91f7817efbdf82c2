"""``FLUXON_LOG`` logging setup shared by every role and client."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

LOG_ENV = "FLUXON_LOG"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LEVEL = "INFO"
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def level_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The level named by ``FLUXON_LOG`` (case-insensitive; unset or blank means INFO).

    An unknown name raises ``ValueError`` naming the variable and the accepted levels rather than
    silently logging at some other level.
    """
    raw = (os.environ if environ is None else environ).get(LOG_ENV)
    name = (raw or "").strip().upper() or DEFAULT_LEVEL
    if name not in LEVELS:
        raise ValueError(f"{LOG_ENV}={raw!r} is not a log level; expected one of {', '.join(LEVELS)} (any case)")
    return int(getattr(logging, name))


def configure_logging(log_path: str | os.PathLike[str] | None = None) -> None:
    """Configure the ``fluxon`` logger tree from ``FLUXON_LOG``; optionally also log to a file.

    Safe to call more than once: the console handler and each file handler are added once.
    Raises ``ValueError`` when ``FLUXON_LOG`` names no level.
    """
    root = logging.getLogger("fluxon")
    root.setLevel(level_from_env())
    if not any(getattr(h, "_fluxon", False) for h in root.handlers):
        handler: logging.Handler = logging.StreamHandler()
        handler._fluxon = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    if log_path is not None:
        target = os.path.abspath(log_path)
        if any(getattr(h, "baseFilename", None) == target for h in root.handlers):
            return  # configured twice in one process: one handler per file, not one per call
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(target)
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(file_handler)


def get_logger(name: str) -> logging.Logger:
    """A logger under the ``fluxon`` tree, so ``FLUXON_LOG`` governs it."""
    inside = name == "fluxon" or name.startswith("fluxon.")
    return logging.getLogger(name if inside else f"fluxon.{name}")
