"""One error root, with families grouped by what the caller should do.

- `InvalidInput`: fix the input (exit 2).
- `Unsatisfiable`: the input is well formed but cannot be met; change the plan (exit 1).
- `StoreError`: the datastore failed or cannot be reached; retry or repair it (exit 3).
Every message is one line that says the operation or field, then the reason.
"""

from __future__ import annotations


class NetplanError(Exception):
    exit_code = 1


class InvalidInput(NetplanError):
    exit_code = 2

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field, self.value, self.reason = field, value, reason
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}: {shown} {reason}" if field else f"{shown} {reason}")


class Unsatisfiable(NetplanError):
    exit_code = 1


class RangeConflict(Unsatisfiable):
    """Two ranges that must be disjoint overlap."""


class PoolExhausted(Unsatisfiable):
    def __init__(self, pool: str, cidr: object, capacity: int, wanted: int) -> None:
        self.pool, self.capacity, self.wanted = pool, capacity, wanted
        super().__init__(
            f"pool {pool} ({cidr}) is exhausted: it holds {capacity} node CIDRs "
            f"and {wanted} nodes ask for one"
        )


class PinConflict(Unsatisfiable):
    """A pinned CIDR that another node holds or that lies in a reserved range."""


class StoreError(NetplanError):
    exit_code = 3


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened."""


class StoreConflict(StoreError):
    """A compare-and-swap lost against another writer: re-read and re-plan."""
