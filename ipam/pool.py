"""A pool carved into node CIDRs, with one byte of state per node CIDR.

Like kube-controller-manager's cidrset, a pool is a bitmap over equal-sized node CIDRs, but
netplan also remembers which CIDRs were ever handed out, so that a CIDR freed a moment ago
(whose routes may still linger on peers) is reused only once no never-used CIDR is left,
oldest release first.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ipam.errors import InvalidInput, PinConflict
from ipam.net import BITS, Cidr

# The widest pool the bitmap carries (2**24 node CIDRs, 16 MiB); IPv6 is held to Kubernetes'
# 16 bits by validation, IPv4 /8 pools with /32 nodes still fit.
MAX_SLOT_BITS = 24
IPV6_MAX_WIDTH = 16

# Slot states, one byte each: bytes.find() locates the lowest never-used slot at C speed.
FRESH, LEASED, RELEASED, RESERVED = b"\x00", b"\x01", b"\x02", b"\x03"


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    cidr: Cidr
    node_mask: int  # prefix length of every node CIDR carved from the pool

    def __post_init__(self) -> None:
        field = f"pool {self.name}: nodeMaskSize"
        if not self.cidr.prefixlen <= self.node_mask <= self.cidr.bits:
            raise InvalidInput(
                field, self.node_mask,
                f"is out of range for {self.cidr} (between {self.cidr.prefixlen} and "
                f"{self.cidr.bits})",
            )
        width = self.node_mask - self.cidr.prefixlen
        if self.cidr.version == 6 and width > IPV6_MAX_WIDTH:
            raise InvalidInput(
                field, self.node_mask,
                f"is more than {IPV6_MAX_WIDTH} bits longer than the pool's /"
                f"{self.cidr.prefixlen} (an IPv6 pool holds at most 65536 node CIDRs)",
            )
        if width > MAX_SLOT_BITS:
            raise InvalidInput(
                field, self.node_mask,
                f"carves {self.cidr} into more than 2**{MAX_SLOT_BITS} node CIDRs",
            )

    @property
    def slots(self) -> int:
        return 1 << (self.node_mask - self.cidr.prefixlen)

    def slot_of(self, cidr: Cidr) -> int | None:
        """The index of a node CIDR of this pool, or None if cidr is not one."""
        version, value, prefixlen = cidr
        pool_version, pool_value, pool_prefixlen = self.cidr
        if prefixlen != self.node_mask or version != pool_version:
            return None
        # A CIDR has no host bits: below the pool the slot is negative, above it too high.
        slot = (value - pool_value) >> (BITS[version] - prefixlen)
        return slot if 0 <= slot < 1 << (prefixlen - pool_prefixlen) else None

    def cidr_at(self, slot: int) -> Cidr:
        return self.cidr.subnet(self.node_mask, slot)


class PoolMap:
    """The state of every node CIDR of one pool: fresh, leased, released or reserved."""

    def __init__(self, pool: Pool, reserved: tuple[Cidr, ...] = ()) -> None:
        self.pool = pool
        self._slots = bytearray(pool.slots)
        # Released slots by (release sequence, slot): the oldest release is reused first.
        self._released: list[tuple[int, int]] = []
        self._release_seq: dict[int, int] = {}
        # Every slot below this index has been handed out or reserved.
        self._fresh_from = 0
        self.leased = 0
        self.reserved = 0
        self.reserved_ranges = tuple(r for r in reserved if r.overlaps(pool.cidr))
        shift = pool.cidr.bits - pool.node_mask
        for r in self.reserved_ranges:
            lo = max(r.first, pool.cidr.first) - pool.cidr.first
            hi = min(r.last, pool.cidr.last) - pool.cidr.first
            a, b = lo >> shift, (hi >> shift) + 1
            self.reserved += b - a - self._slots[a:b].count(RESERVED)
            self._slots[a:b] = RESERVED * (b - a)

    @property
    def capacity(self) -> int:
        """Node CIDRs the pool can hand out: all but the reserved ones."""
        return len(self._slots) - self.reserved

    @property
    def available(self) -> int:
        return self.capacity - self.leased

    def state(self, cidr: Cidr) -> bytes | None:
        slot = self.pool.slot_of(cidr)
        return None if slot is None else self._slots[slot : slot + 1]

    def fits(self, cidr: Cidr) -> bool:
        """Whether cidr is a node CIDR of the pool outside every reserved range."""
        state = self.state(cidr)
        return state is not None and state != RESERVED

    def reserved_range_of(self, cidr: Cidr) -> Cidr | None:
        """The reserved range that blocks cidr, for messages."""
        return next((r for r in self.reserved_ranges if r.overlaps(cidr)), None)

    def remember_release(self, cidr: Cidr, seq: int) -> None:
        """cidr was handed out and freed at release sequence seq (history from the store, or
        a lease this plan frees). A CIDR freed again counts from its latest release."""
        slot = self.pool.slot_of(cidr)
        if slot is None:
            return
        state = self._slots[slot : slot + 1]
        if state == FRESH or (state == RELEASED and seq > self._release_seq[slot]):
            self._mark_released(slot, seq)

    def occupy(self, cidr: Cidr, node: str) -> None:
        """Lease a given node CIDR (a stored lease or a pinned CIDR)."""
        slot = self.pool.slot_of(cidr)
        if slot is None:
            raise InvalidInput(
                f"node {node}", str(cidr),
                f"is not a /{self.pool.node_mask} inside pool {self.pool.name} ({self.pool.cidr})",
            )
        state = self._slots[slot : slot + 1]
        if state == RESERVED:
            raise PinConflict(
                f"node {node}: {cidr} lies in reserved range {self.reserved_range_of(cidr)} "
                f"of pool {self.pool.name}"
            )
        if state == LEASED:
            raise PinConflict(f"node {node}: {cidr} is already leased in pool {self.pool.name}")
        self._lease(slot)

    def allocate(self) -> Cidr | None:
        """The lowest never-used node CIDR, else the oldest released one; None when full."""
        slot = self._slots.find(FRESH, self._fresh_from)
        if slot >= 0:
            self._fresh_from = slot + 1
        else:
            slot = self._pop_released()
            if slot is None:
                return None
        self._lease(slot)
        return self.pool.cidr_at(slot)

    def release(self, cidr: Cidr, seq: int) -> None:
        slot = self.pool.slot_of(cidr)
        if slot is None or self._slots[slot : slot + 1] != LEASED:
            raise ValueError(f"release: {cidr} is not leased in pool {self.pool.name}")
        self.leased -= 1
        self._mark_released(slot, seq)

    def released(self) -> list[tuple[Cidr, int]]:
        """The released node CIDRs with their release sequence, oldest first."""
        return sorted(
            ((self.pool.cidr_at(s), q) for s, q in self._release_seq.items()),
            key=lambda item: (item[1], item[0]),
        )

    def _lease(self, slot: int) -> None:
        self._slots[slot] = LEASED[0]
        self._release_seq.pop(slot, None)
        self.leased += 1

    def _mark_released(self, slot: int, seq: int) -> None:
        self._slots[slot] = RELEASED[0]
        self._release_seq[slot] = seq
        heapq.heappush(self._released, (seq, slot))

    def _pop_released(self) -> int | None:
        while self._released:
            seq, slot = heapq.heappop(self._released)
            # Entries go stale when a slot is leased again or released anew; skip those.
            if self._release_seq.get(slot) == seq and self._slots[slot] == RELEASED[0]:
                return slot
        return None
