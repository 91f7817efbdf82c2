"""Bootstrap of every role child: ``python -m fluxon_core.runtime.child <module> [args...]``.

Arms the parent-death signal, then runs ``<module>`` exactly like ``python -m <module> [args...]``.
"""

from __future__ import annotations

import runpy
import sys

from fluxon_core.runtime.parent_death import die_with_launcher


def main() -> None:
    """Run the module named by the first argument as ``__main__``."""
    if len(sys.argv) < 2:
        sys.stderr.write("usage: python -m fluxon_core.runtime.child <module> [args...]\n")
        raise SystemExit(2)
    die_with_launcher()
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
