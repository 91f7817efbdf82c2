"""How the FS product's ``fluxon`` subcommands end: one error policy, one set of exit statuses.

Exit status 0: done. 1: refused — a typed :class:`~fluxon_core.errors.ApiError` from the system
(the message names its class, e.g. ``fluxon transfer: KeyNotFoundError: ...``). 2: usage error —
:class:`UsageError`, bad command-line input found after argparse. Both messages go to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from fluxon_core.errors import ApiError


class UsageError(Exception):
    """Bad command-line input found after parsing (exit status 2)."""


def run_command(name: str, body: Callable[[], int]) -> int:
    """Run the body of ``fluxon <name>`` and turn its errors into a message and an exit status."""
    try:
        return int(body())
    except UsageError as exc:
        print(f"fluxon {name}: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"fluxon {name}: {exc}", file=sys.stderr)
        return 1
