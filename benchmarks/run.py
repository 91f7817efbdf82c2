"""The benchmark harness: ``python -m benchmarks.run --quick | --full [--only rpc,pool]``.

Discovers every ``benchmarks/bench_<area>.py`` module. Each exposes ``run(quick: bool) -> list[dict]``
returning rows with the keys of :data:`ROW_KEYS`; ``ratio`` is Fluxon over the baseline measured
side by side in the same run (machines are shared and noisy: ratios, not bare times, are the result).
Prints one table and writes every row, plus a description of the machine, to
``benchmarks/results/<UTC timestamp>.json``.

Exit status: 0 when every selected module ran (targets missed are reported, not fatal, because a
noisy machine misses them at random), 1 when a module raised, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
ROW_KEYS = ("scenario", "fluxon", "baseline", "unit", "ratio", "target", "met", "note")


def discover() -> list[str]:
    """Area names of the ``bench_<area>`` modules, sorted."""
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules([str(BENCH_DIR)])
        if info.name.startswith("bench_")
    )


def check_rows(area: str, rows: Any) -> list[dict[str, Any]]:
    """The rows of one module, or ValueError naming the module, the row and what is wrong."""
    if not isinstance(rows, list):
        raise ValueError(f"bench_{area}.run() must return a list of dicts, got {type(rows).__name__}")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"bench_{area}.run()[{index}] must be a dict, got {type(row).__name__}")
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"bench_{area}.run()[{index}] lacks keys {missing}")
    return rows


def machine() -> dict[str, Any]:
    """What the numbers were measured on (the load average shows how shared the machine was)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "commit": commit,
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def render(console: Console, rows: list[dict[str, Any]]) -> None:
    """Print the result table."""
    table = Table(title="Fluxon benchmarks (ratio = fluxon / baseline, same run)")
    for column in ("area", "scenario", "fluxon", "baseline", "unit", "ratio", "target", "met", "note"):
        table.add_column(column, justify="right" if column in ("fluxon", "baseline", "ratio") else "left")
    for row in rows:
        met = "[green]yes[/green]" if row["met"] else "[red]no[/red]"
        table.add_row(
            row["area"],
            row["scenario"],
            _format(row["fluxon"]),
            _format(row["baseline"]),
            row["unit"],
            _format(row["ratio"]),
            row["target"],
            met,
            row["note"],
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmark modules, print the table and write the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a short pass (about 2 minutes for all modules; default)")
    mode.add_argument("--full", action="store_true", help="longer runs for the report in docs/performance.md")
    parser.add_argument("--only", default="", help="comma list of areas to run, e.g. rpc,pool")
    parser.add_argument("--output", type=Path, default=None, help="JSON report path (default benchmarks/results/)")
    args = parser.parse_args(argv)

    console = Console(width=None if sys.stdout.isatty() else 160)
    available = discover()
    selected = [a.strip() for a in args.only.split(",") if a.strip()] or available
    unknown = sorted(set(selected) - set(available))
    if unknown:
        console.print(f"unknown benchmark area(s) {', '.join(unknown)}; available: {', '.join(available)}")
        return 2

    quick = not args.full
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    seconds_by_area: dict[str, float] = {}
    started = time.monotonic()
    for area in selected:
        console.print(f"[bold]bench_{area}[/bold] ({'quick' if quick else 'full'}) ...")
        area_started = time.monotonic()
        try:
            module = importlib.import_module(f"benchmarks.bench_{area}")
            rows += [dict(row, area=area) for row in check_rows(area, module.run(quick))]
        except Exception:
            failures[area] = traceback.format_exc()
            console.print(f"[red]bench_{area} failed[/red]\n{failures[area]}")
        seconds_by_area[area] = round(time.monotonic() - area_started, 1)
        console.print(f"  done in {seconds_by_area[area]}s")

    render(console, rows)
    report = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "seconds": round(time.monotonic() - started, 1),
        "seconds_by_area": seconds_by_area,
        "machine": machine(),
        "rows": rows,
        "failures": failures,
    }
    output = args.output or RESULTS_DIR / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
