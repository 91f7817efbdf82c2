"""Children die with their launcher: the Linux parent-death signal, set in the child itself.

The launcher passes its pid in ``FLUXON_PARENT_PID``; the child asks the kernel (``prctl
PR_SET_PDEATHSIG``) for SIGTERM when its parent goes, then checks the parent is still the one it
was started by, closing the race where the launcher died before the ``prctl``. The signal follows
the *thread* that forked the child, so launch role processes from a long-lived thread (normally
the main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_PID_ENV = "FLUXON_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``signum`` when the parent exits; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)


def die_with_launcher() -> None:
    """In a role child: arm the parent-death signal if a launcher asked for it, exit if it is already gone."""
    expected = os.environ.get(PARENT_PID_ENV)
    if not expected:
        return
    set_parent_death_signal(signal.SIGTERM)
    if str(os.getppid()) != expected:
        sys.stderr.write(f"launcher pid {expected} is already gone; exiting\n")
        sys.exit(1)
