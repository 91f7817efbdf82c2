"""``Result``: the return type of the KV client API (see KV.md §3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, NoReturn, TypeVar

from fluxon_core.errors import ApiError

T = TypeVar("T")
U = TypeVar("U")


class UnwrapError(RuntimeError):
    """Raised by :meth:`Result.unwrap` on an error result; ``__cause__`` is the typed error."""


class Result(Generic[T]):
    """Either an ok value or a typed :class:`ApiError`; never both."""

    __slots__ = ("_error", "_value")

    def __init__(self, value: T | None = None, error: ApiError | None = None) -> None:
        self._value = value
        self._error = error

    @classmethod
    def ok(cls, value: T = None) -> Result[T]:  # type: ignore[assignment]
        """An ok result holding ``value``."""
        return cls(value=value)

    @classmethod
    def err(cls, error: ApiError) -> Result[T]:
        """An error result holding ``error``."""
        if not isinstance(error, ApiError):
            raise TypeError(f"Result.err expects an ApiError, got {type(error).__name__}")
        return cls(error=error)

    @classmethod
    def capture(cls, fn: Callable[[], T]) -> Result[T]:
        """Run ``fn``; an :class:`ApiError` it raises becomes an error result."""
        try:
            return cls.ok(fn())
        except ApiError as exc:
            return cls.err(exc)

    def is_ok(self) -> bool:
        """True when this result holds a value."""
        return self._error is None

    def is_err(self) -> bool:
        """True when this result holds an error."""
        return self._error is not None

    def unwrap(self, msg: str = "") -> T:
        """The value; on error raise ``UnwrapError("<msg>: <typed error>")``."""
        if self._error is not None:
            self._raise(msg)
        return self._value  # type: ignore[return-value]

    def unwrap_error(self, msg: str = "") -> ApiError:
        """The error; on an ok result raise ``UnwrapError``."""
        if self._error is None:
            raise UnwrapError(f"{msg}: result is ok" if msg else "unwrap_error on an ok result")
        return self._error

    def error(self) -> ApiError | None:
        """The error, or None."""
        return self._error

    def map(self, fn: Callable[[T], U]) -> Result[U]:
        """Apply ``fn`` to the value of an ok result."""
        if self._error is not None:
            return Result.err(self._error)
        return Result.ok(fn(self._value))  # type: ignore[arg-type]

    def _raise(self, msg: str) -> NoReturn:
        text = f"{msg}: {self._error}" if msg else str(self._error)
        raise UnwrapError(text) from self._error

    def __repr__(self) -> str:
        return f"Result.ok({self._value!r})" if self._error is None else f"Result.err({self._error!r})"
