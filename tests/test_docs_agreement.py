"""The docs describe exactly what the code does."""

from pathlib import Path

from fluxon_core.config.reference import BEGIN_MARK, END_MARK, render_reference

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_matches_parser():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    start = text.index(BEGIN_MARK)
    end = text.index(END_MARK) + len(END_MARK)
    committed = text[start:end] + "\n"
    assert committed == render_reference(), (
        "docs/configuration.md is out of date; run python -m fluxon_core.config.reference --write docs/configuration.md"
    )
