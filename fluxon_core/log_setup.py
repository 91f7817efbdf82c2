"""``FLUXON_LOG`` logging setup shared by every role and client."""

from __future__ import annotations

import logging
import os
from pathlib import Path

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def level_from_env(environ: dict[str, str] | None = None) -> int:
    """The level named by ``FLUXON_LOG`` (case-insensitive, default INFO).

    An unknown name is an error rather than a silent fallback.
    """
    env = os.environ if environ is None else environ
    name = env.get("FLUXON_LOG", "INFO").strip().upper() or "INFO"
    if name not in LEVELS:
        raise ValueError(
            f"FLUXON_LOG={env.get('FLUXON_LOG')!r} is not a log level; expected one of {', '.join(LEVELS)}"
        )
    return int(getattr(logging, name))


def configure_logging(log_path: str | os.PathLike[str] | None = None) -> None:
    """Configure the ``fluxon`` logger tree from ``FLUXON_LOG``; optionally also log to a file."""
    root = logging.getLogger("fluxon")
    root.setLevel(level_from_env())
    if not any(getattr(h, "_fluxon", False) for h in root.handlers):
        handler: logging.Handler = logging.StreamHandler()
        handler._fluxon = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_path)
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(file_handler)


def get_logger(name: str) -> logging.Logger:
    """A logger under the ``fluxon`` tree, so ``FLUXON_LOG`` governs it."""
    return logging.getLogger(name if name.startswith("fluxon") else f"fluxon.{name}")
