"""Overlaps between claimed ranges, found with one sort and one sweep.

CIDRs are laminar: two of them are either disjoint or one contains the other. Sorted by
start address (wider first on ties), the ranges still open at any point form a chain of
nested ranges, so a stack replaces the interval tree and the sweep costs
O(n log n + overlaps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ipam.net import Cidr

# Kinds of claim. Which pairs may overlap is the caller's rule (see `forbidden`).
POOL, SERVICES, AVOID, RESERVED, HOST, LEASE = (
    "pool", "services", "avoid", "reserved", "host", "lease",
)


@dataclass(frozen=True, slots=True)
class Claim:
    kind: str
    label: str  # what the user calls it, e.g. "pools[0] (pods-v4)" or "node node-a"
    cidr: Cidr
    cluster: str = ""

    def describe(self, other: Claim | None = None) -> str:
        text = f"{self.label} {self.cidr}" if self.kind != HOST else (
            f"{self.label} address {self.cidr.address(0)}"
        )
        if other is not None and other.cluster != self.cluster and self.cluster:
            text += f" of cluster {self.cluster}"
        return text


def overlapping_pairs(
    claims: Iterable[Claim], relevant: Callable[[Claim, Claim], bool]
) -> list[tuple[Claim, Claim]]:
    """Every pair (outer, inner) of overlapping claims for which relevant(outer, inner)."""
    ordered = sorted(claims, key=lambda c: (c.cidr.version, c.cidr.first, -c.cidr.last))
    pairs: list[tuple[Claim, Claim]] = []
    stack: list[Claim] = []
    for claim in ordered:
        while stack and (
            stack[-1].cidr.version != claim.cidr.version or stack[-1].cidr.last < claim.cidr.first
        ):
            stack.pop()
        for outer in stack:
            if relevant(outer, claim):
                pairs.append((outer, claim))
        stack.append(claim)
    return pairs


# Pairs of kinds that must never overlap, in any cluster of a store (DESIGN.md section 2).
_EXCLUSIVE = {
    frozenset({POOL}), frozenset({POOL, SERVICES}), frozenset({POOL, AVOID}),
    frozenset({SERVICES}), frozenset({SERVICES, AVOID}),
    frozenset({HOST, POOL}), frozenset({HOST, SERVICES}), frozenset({HOST, RESERVED}),
    frozenset({LEASE}),
}


def forbidden(a: Claim, b: Claim) -> bool:
    return frozenset({a.kind, b.kind}) in _EXCLUSIVE


def conflicts(claims: Iterable[Claim]) -> list[tuple[Claim, Claim]]:
    """The pairs of claims that break the plan's disjointness rules, lowest first."""
    return overlapping_pairs(claims, forbidden)


def describe_conflict(a: Claim, b: Claim) -> str:
    verb = "contains" if a.cidr.contains(b.cidr) and a.cidr != b.cidr else "overlaps"
    return f"{a.describe(b)} {verb} {b.describe(a)}"
