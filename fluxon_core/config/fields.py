"""Declaring config fields: documentation and value checks travel with the field."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import attrs

from fluxon_core.protocols import BACKEND_PROTOCOLS


@attrs.frozen
class ElementProblem:
    """A check's finding about one element of a collection: ``suffix`` extends the field path (``[2]``)."""

    suffix: str
    expectation: str


Check = Callable[[Any], str | ElementProblem | None]
"""A value check returns None when the value is fine, else the expectation (``"must be > 0"``)."""


def config_field(
    *,
    doc: str,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    check: Check | None = None,
    backend: str | None = None,
) -> Any:
    """An attrs field with the metadata the loader and the reference generator use.

    ``backend`` names a backend category when the field is a :class:`BackendConfig` selected by ``kind:``.
    Give mutable defaults with ``factory`` so instances never share them.
    """
    if factory is not None and default is not attrs.NOTHING:
        raise TypeError("config_field takes either default= or factory=, not both")
    if isinstance(default, list | dict | set):
        raise TypeError(f"config_field default {default!r} is mutable; use factory= instead")
    if backend is not None and backend not in BACKEND_PROTOCOLS:
        raise ValueError(
            f"config_field backend={backend!r} is not a backend category; one of: {', '.join(BACKEND_PROTOCOLS)}"
        )
    metadata = {"doc": doc, "check": check, "backend": backend}
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def positive(value: Any) -> str | None:
    """Check: strictly greater than zero."""
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    """Check: zero or more."""
    return None if value >= 0 else "must be >= 0"


def non_empty(value: Any) -> str | None:
    """Check: a non-empty string or collection."""
    return None if len(value) > 0 else "must not be empty"


def absolute_path(value: Any) -> str | None:
    """Check: an absolute filesystem path."""
    return None if os.path.isabs(value) else f"must be an absolute path, got {value!r}"


def port_number(value: Any) -> str | None:
    """Check: a TCP port (0 picks a free one)."""
    return None if 0 <= value <= 65535 else f"must be a port number 0..65535, got {value}"


_HOST_PORT = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")


def host_port(value: Any) -> str | None:
    """Check: ``host:port``."""
    return None if _HOST_PORT.match(value) else f"must be host:port, got {value!r}"


def http_url(value: Any) -> str | None:
    """Check: an ``http://`` or ``https://`` URL."""
    return None if re.match(r"^https?://[^\s/]+", value) else f"must be an http(s):// URL, got {value!r}"


def slash_wrapped(value: Any) -> str | None:
    """Check: starts and ends with ``/``."""
    ok = value.startswith("/") and value.endswith("/")
    return None if ok else f"must start and end with '/', got {value!r}"


_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


def identifier(value: Any) -> str | None:
    """Check: a name made of letters, digits, ``.``, ``_`` and ``-``."""
    return None if _IDENT.match(value) else f"must be a name of letters, digits, '.', '_', '-', got {value!r}"


def each(check: Check) -> Check:
    """Apply ``check`` to every element of a list; a problem names the element's index in the path."""

    def check_each(values: Any) -> ElementProblem | None:
        for index, value in enumerate(values):
            problem = check(value)
            if isinstance(problem, ElementProblem):
                return ElementProblem(f"[{index}]{problem.suffix}", problem.expectation)
            if problem:
                return ElementProblem(f"[{index}]", problem)
        return None

    return check_each


def all_of(*checks: Check) -> Check:
    """Apply several checks in order; the first problem wins."""

    def check_all(value: Any) -> str | ElementProblem | None:
        for check in checks:
            problem = check(value)
            if problem:
                return problem
        return None

    return check_all
