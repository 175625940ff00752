"""The anchors: the simplest thing that does the same job, measured in the same run."""

from __future__ import annotations

import ipaddress


def bitmap_allocate(pool: str, mask: int, reserved: list[str], count: int) -> list:
    """A minimal bytearray-bitmap allocator on the standard library's ipaddress."""
    net = ipaddress.ip_network(pool)
    shift = net.max_prefixlen - mask
    base = int(net.network_address)
    used = bytearray(1 << (mask - net.prefixlen))
    for r in reserved:
        rn = ipaddress.ip_network(r)
        lo = (int(rn.network_address) - base) >> shift
        hi = (int(rn.broadcast_address) - base) >> shift
        used[lo : hi + 1] = b"\x01" * (hi - lo + 1)
    out = []
    slot = 0
    for _ in range(count):
        slot = used.find(b"\x00", slot)
        if slot < 0:
            raise RuntimeError("exhausted")
        used[slot] = 1
        out.append(ipaddress.ip_network((base + (slot << shift), mask)))
    return out


def sweep_overlaps(ranges: list[tuple[int, int]], against: list[tuple[int, int]]) -> int:
    """Integer sort-and-sweep: how many of `ranges` overlap one of `against`."""
    events = sorted([(a, b, 0) for a, b in ranges] + [(a, b, 1) for a, b in against])
    hits = 0
    reach = {0: -1, 1: -1}  # the furthest end seen so far on each side
    for start, end, side in events:
        if start <= reach[1 - side]:
            hits += 1
        reach[side] = max(reach[side], end)
    return hits
