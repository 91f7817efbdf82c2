"""The readiness line a role prints once it serves, and waiting for it from the launcher.

A role prints exactly one line ``FLUXON_READY role=<role> instance_key=<key> endpoint=<endpoint> pid=<pid> …``
on stdout once it is ready. Launchers redirect the child's output to its log file and watch that
file (from the offset where the child started writing) for the line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import attrs

READY_PREFIX = "FLUXON_READY"


@attrs.frozen
class ReadyInfo:
    """The fields of a readiness line."""

    role: str
    fields: dict[str, str]

    @property
    def instance_key(self) -> str:
        """The role's instance_key."""
        return self.fields.get("instance_key", "")

    @property
    def endpoint(self) -> str:
        """The role's RPC endpoint."""
        return self.fields.get("endpoint", "")


class RoleStartError(RuntimeError):
    """A role process exited or stayed silent instead of printing its readiness line."""


def format_ready_line(role: str, **fields: object) -> str:
    """``FLUXON_READY role=<role> k=v …``; values must not contain whitespace."""
    parts = [READY_PREFIX, f"role={role}"]
    for name, value in fields.items():
        text = str(value)
        if not text or any(ch.isspace() for ch in text):
            raise ValueError(f"readiness field {name}={text!r} must be non-empty without whitespace")
        parts.append(f"{name}={text}")
    return " ".join(parts)


def announce_ready(role: str, **fields: object) -> None:
    """Print the readiness line on stdout and flush it."""
    print(format_ready_line(role, pid=os.getpid(), **fields), flush=True)
    sys.stdout.flush()


def parse_ready_line(line: str) -> ReadyInfo | None:
    """The readiness info of ``line``, or None when it is not a readiness line."""
    words = line.strip().split()
    if not words or words[0] != READY_PREFIX:
        return None
    fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
    role = fields.pop("role", "")
    return ReadyInfo(role=role, fields=fields)


def _tail(path: Path, offset: int, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def wait_for_ready_line(
    proc: subprocess.Popen,  # type: ignore[type-arg]
    log_path: str | os.PathLike[str],
    *,
    role: str,
    offset: int = 0,
    timeout_s: float = 60.0,
    poll_interval_s: float = 0.02,
) -> ReadyInfo:
    """Watch ``log_path`` from ``offset`` for ``role``'s readiness line; RoleStartError on exit or timeout."""
    path = Path(log_path)
    deadline = time.monotonic() + timeout_s
    position = offset
    pending = b""
    while True:
        try:
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        position += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            info = parse_ready_line(raw.decode("utf-8", "replace"))
            if info is not None and info.role == role:
                return info
        returncode = proc.poll()
        if returncode is not None:
            raise RoleStartError(
                f"{role} (pid {proc.pid}) exited with status {returncode} before it was ready; "
                f"end of {path}:\n{_tail(path, offset)}"
            )
        if time.monotonic() >= deadline:
            raise RoleStartError(
                f"{role} (pid {proc.pid}) printed no readiness line within {timeout_s:.0f}s; "
                f"end of {path}:\n{_tail(path, offset)}"
            )
        time.sleep(poll_interval_s)
