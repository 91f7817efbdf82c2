"""The one shape of a benchmark result row (see ``benchmarks/run.py``)."""

from __future__ import annotations

from typing import Any


def result_row(
    scenario: str,
    fluxon: float,
    baseline: float,
    unit: str,
    target: str,
    met: bool,
    note: str,
    *,
    ratio: float | None = None,
) -> dict[str, Any]:
    """A row; ``ratio`` defaults to fluxon / baseline (pass it when it was measured otherwise, e.g. paired)."""
    if ratio is None:
        ratio = fluxon / baseline if baseline else 0.0
    return {
        "scenario": scenario,
        "fluxon": round(fluxon, 3),
        "baseline": round(baseline, 3),
        "unit": unit,
        "ratio": round(ratio, 3),
        "target": target,
        "met": met,
        "note": note,
    }
