"""Config errors: one message naming the full dotted path and what was expected."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config value is missing, unknown or invalid.

    ``path`` is the dotted path of the field (``fluxon_fs.cache.rules[2].dir_abs``), ``expectation``
    what was expected, ``source`` the file the value came from when it came from one.
    """

    def __init__(self, path: str, expectation: str, source: str | None = None) -> None:
        self.path = path or "<root>"
        self.expectation = expectation
        self.source = source
        where = f" (in {source})" if source else ""
        super().__init__(f"{self.path} {expectation}{where}")

    def with_source(self, source: str) -> ConfigError:
        """The same error, also naming the file it came from."""
        return type(self)(self.path, self.expectation, source)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle their args by default; ours are rebuilt from the fields instead.
        return (type(self), (self.path, self.expectation, self.source))


class ConfigTypeError(ConfigError, TypeError):
    """A config value has the wrong type (also a ``TypeError``)."""
