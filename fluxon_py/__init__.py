"""Compatibility names for code written against the published user guide (no logic lives here)."""
