"""Config errors: one message naming the full dotted path and what was expected."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is missing, unknown or invalid. ``path`` is the dotted path of the field."""

    def __init__(self, path: str, expectation: str) -> None:
        self.path = path or "<root>"
        self.expectation = expectation
        super().__init__(f"{self.path} {expectation}")


class ConfigTypeError(ConfigError, TypeError):
    """A config value has the wrong type (also a ``TypeError``)."""
