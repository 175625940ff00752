"""Overlaps between claimed ranges, found with one sort and one sweep.

CIDRs are laminar: two of them are either disjoint or one contains the other. Sorted by
start address (wider first on ties), the ranges still open at any point form a chain of
nested ranges, so a stack replaces the interval tree and the sweep costs
O(n log n + overlaps).
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import NamedTuple

from ipam.net import Cidr

# Kinds of claim. Which pairs may overlap is the caller's rule (see `forbidden`).
POOL, SERVICES, AVOID, RESERVED, HOST, LEASE = (
    "pool", "services", "avoid", "reserved", "host", "lease",
)


class Claim(NamedTuple):
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
    claims: Iterable[Claim], exclusive: set[tuple[str, str]]
) -> list[tuple[Claim, Claim]]:
    """Every pair (outer, inner) of overlapping claims whose kinds are in `exclusive`."""
    # A Cidr's own order (family, first address, shorter prefix first) puts outer ranges
    # before the ranges they contain; sorting claims by it, with the key read in C, costs
    # a third less than building sort keys (the sort is stable: ties keep input order).
    pairs: list[tuple[Claim, Claim]] = []
    stack: list[tuple[int, Claim]] = []  # (last, claim) of the open chain of nested ranges
    family = 0
    for claim in sorted(claims, key=_cidr):
        version, first, prefixlen = claim[2]
        if version != family:  # IPv6 after IPv4: no range of one overlaps one of the other
            stack.clear()
            family = version
        while stack and stack[-1][0] < first:
            stack.pop()
        if stack:
            kind = claim[0]
            for _, outer in stack:
                if (outer[0], kind) in exclusive:
                    pairs.append((outer, claim))
        stack.append((first + (1 << ((32 if version == 4 else 128) - prefixlen)) - 1, claim))
    return pairs


_cidr = itemgetter(2)  # Claim.cidr


# Pairs of kinds that must never overlap, in any cluster of a store (DESIGN.md section 2).
_EXCLUSIVE = {
    (POOL, POOL), (POOL, SERVICES), (POOL, AVOID),
    (SERVICES, SERVICES), (SERVICES, AVOID),
    (HOST, POOL), (HOST, SERVICES), (HOST, RESERVED),
    (LEASE, LEASE),
}
_EXCLUSIVE |= {(b, a) for a, b in _EXCLUSIVE}


def forbidden(a: Claim, b: Claim) -> bool:
    return (a.kind, b.kind) in _EXCLUSIVE


def conflicts(claims: Iterable[Claim]) -> list[tuple[Claim, Claim]]:
    """The pairs of claims that break the plan's disjointness rules, lowest first."""
    return overlapping_pairs(claims, _EXCLUSIVE)


def describe_conflict(a: Claim, b: Claim) -> str:
    verb = "contains" if a.cidr.contains(b.cidr) and a.cidr != b.cidr else "overlaps"
    return f"{a.describe(b)} {verb} {b.describe(a)}"
