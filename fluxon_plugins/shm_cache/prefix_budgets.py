"""Byte budgets for key prefixes inside the pool: the owner's per-prefix accounting and LRU order.

The owner is the only writer of the pool, so this accounting is exact and shared by every process
of the host: whoever stores a value under a budgeted prefix, the same budget pays for it. Each
budget keeps its keys in their own least-recently-used order (mirroring the pool's index), so
making room inside a prefix costs as much as the values it evicts, never a scan of the pool.

Not thread-safe: the owner calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.protocols import PrefixUsage


class PrefixBudget:
    """One budgeted prefix: its cap, the charged bytes of its values, and their LRU order."""

    def __init__(self, prefix: str, max_bytes: int) -> None:
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.used = 0
        self.reserved = 0
        """Room held for values of this prefix being written (as the pool's own reservations)."""
        self.evictions = 0
        self._charged: OrderedDict[str, int] = OrderedDict()

    def over_by(self, needed: int, credit: int) -> int:
        """How many bytes must go before ``needed`` more (``credit`` freed by a replaced value) fit."""
        return self.used + self.reserved + needed - credit - self.max_bytes

    def least_recent(self, exclude: str) -> str | None:
        """The least recently used key of the prefix other than ``exclude``."""
        return next((key for key in self._charged if key != exclude), None)

    def usage(self) -> PrefixUsage:
        """The budget and what it holds now."""
        return PrefixUsage(
            budget_bytes=self.max_bytes, used_bytes=self.used, entries=len(self._charged), evictions=self.evictions
        )

    def add(self, key: str, charged: int) -> None:
        self._charged[key] = charged
        self.used += charged

    def remove(self, key: str) -> None:
        self.used -= self._charged.pop(key)

    def touch(self, key: str) -> None:
        self._charged.move_to_end(key)


class PrefixBudgets:
    """The budgeted prefixes of a pool (disjoint: a key belongs to at most one)."""

    def __init__(self) -> None:
        self._budgets: dict[str, PrefixBudget] = {}
        self._budget_of_key: dict[str, PrefixBudget] = {}
        """The budget of every present key that has one: reads and removals find it without a prefix scan."""

    def set(self, prefix: str, max_bytes: int, present: Iterable[tuple[str, int]]) -> PrefixBudget:
        """Create or change the budget of ``prefix``; a new one takes over ``present`` keys (key, charged),
        given least recently used first. The caller evicts when the prefix is now over budget."""
        if not isinstance(prefix, str) or not prefix:
            raise InvalidArgumentError(f"a budgeted prefix must be a non-empty string, got {prefix!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise InvalidArgumentError(f"the budget of prefix {prefix!r} must be a positive int, got {max_bytes!r}")
        budget = self._budgets.get(prefix)
        if budget is not None:
            budget.max_bytes = max_bytes
            return budget
        for other in self._budgets:
            if other.startswith(prefix) or prefix.startswith(other):
                raise InvalidArgumentError(
                    f"prefix {prefix!r} overlaps budgeted prefix {other!r}; budgeted prefixes must be disjoint"
                )
        budget = PrefixBudget(prefix, max_bytes)
        for key, charged in present:
            if key.startswith(prefix):
                budget.add(key, charged)
                self._budget_of_key[key] = budget
        self._budgets[prefix] = budget
        return budget

    def of(self, key: str) -> PrefixBudget | None:
        """The budget ``key`` is (or would be) charged to, if any."""
        budget = self._budget_of_key.get(key)
        if budget is not None:
            return budget
        for prefix, candidate in self._budgets.items():
            if key.startswith(prefix):
                return candidate
        return None

    def added(self, key: str, charged: int) -> None:
        """A value was installed under ``key``."""
        budget = self.of(key)
        if budget is not None:
            budget.add(key, charged)
            self._budget_of_key[key] = budget

    def removed(self, key: str) -> None:
        """The value of ``key`` was removed (deleted, replaced or evicted)."""
        budget = self._budget_of_key.pop(key, None)
        if budget is not None:
            budget.remove(key)

    def touched(self, key: str) -> None:
        """``key`` was used: it becomes the most recently used of its prefix."""
        budget = self._budget_of_key.get(key)
        if budget is not None:
            budget.touch(key)

    def usage(self) -> dict[str, PrefixUsage]:
        """Every budgeted prefix and what it holds."""
        return {prefix: budget.usage() for prefix, budget in self._budgets.items()}
