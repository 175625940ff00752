"""Allocation of one cluster: node CIDRs for every node from every pool, sticky and ordered.

`plan_allocation` is a pure function of the pools, the nodes, their pins and what the
store holds; the store applies its result. The rules (DESIGN.md section 3):
pins first, then every lease that still fits stays, then new nodes in name order take the
lowest never-used CIDR, released CIDRs last, oldest release first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ipam.errors import PinConflict, PoolExhausted
from ipam.net import Cidr
from ipam.pool import FRESH, LEASED, RELEASED, RESERVED, Pool, PoolMap


class Lease(NamedTuple):
    cluster: str
    pool: str
    node: str
    cidr: Cidr


class Released(NamedTuple):
    """A CIDR that was handed out and freed, with the sequence number of its release."""

    cluster: str
    pool: str
    cidr: Cidr
    seq: int


class Change(NamedTuple):
    action: str  # allocate | release | keep
    node: str
    pool: str
    cidr: Cidr
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PoolUsage:
    pool: Pool
    capacity: int
    allocated: int


@dataclass(frozen=True, slots=True)
class Allocation:
    changes: tuple[Change, ...]
    leases: tuple[Lease, ...]  # every lease of the cluster after the plan
    released: tuple[Released, ...]  # history entries this plan adds
    usage: tuple[PoolUsage, ...]

    @property
    def writes(self) -> bool:
        return any(c.action != "keep" for c in self.changes)


_ACTION_ORDER = {"release": 0, "keep": 1, "allocate": 2}


def plan_allocation(
    cluster: str,
    pools: Sequence[Pool],
    reserved: Sequence[Cidr],
    nodes: Iterable[str],
    pins: Mapping[tuple[str, str], Cidr],
    leases: Iterable[Lease],
    history: Iterable[Released],
    seq: int,
    keep_removed: bool = False,
) -> Allocation:
    """Every node's CIDRs, given what the store holds.

    pins maps (node, pool name) to a pinned CIDR; seq is the release sequence number this
    plan stamps on the CIDRs it frees (higher than any stored one).
    """
    nodes = sorted(set(nodes))
    wanted = set(nodes)
    pool_names = {p.name for p in pools}
    reserved = tuple(reserved)
    changes: list[Change] = []
    final: list[Lease] = []
    freed: list[Released] = []

    by_pool: dict[str, list[Lease]] = {p.name: [] for p in pools}
    for lease in sorted(leases):
        if lease.pool in pool_names:
            by_pool[lease.pool].append(lease)
        elif lease.node in wanted or not keep_removed:
            changes.append(Change("release", lease.node, lease.pool, lease.cidr, "pool removed"))
            freed.append(Released(cluster, lease.pool, lease.cidr, seq))
        else:
            changes.append(Change("keep", lease.node, lease.pool, lease.cidr))
            final.append(lease)
    past: dict[str, list[Released]] = {p.name: [] for p in pools}
    for entry in history:
        if entry.pool in past:
            past[entry.pool].append(entry)

    usage = []
    for pool in pools:
        pmap = PoolMap(pool, reserved)
        for entry in past[pool.name]:
            pmap.remember_release(entry.cidr, entry.seq)
        _plan_pool(cluster, pool, pmap, nodes, pins, by_pool[pool.name], seq, keep_removed,
                   changes, final, freed)
        usage.append(PoolUsage(pool, pmap.capacity, pmap.leased))

    order = {p.name: i for i, p in enumerate(pools)}
    changes.sort(key=lambda c: (c.node, order.get(c.pool, -1), _ACTION_ORDER[c.action]))
    return Allocation(tuple(changes), tuple(sorted(final)), tuple(freed), tuple(usage))


def _plan_pool(cluster, pool, pmap, nodes, pins, stored, seq, keep_removed,
               changes, final, freed) -> None:
    wanted = set(nodes)
    holder: dict[str, Lease] = {}
    to_free: list[Lease] = []
    for lease in stored:
        pin = pins.get((lease.node, pool.name))
        if lease.node not in wanted and not keep_removed:
            to_free.append(lease)
            changes.append(Change("release", lease.node, pool.name, lease.cidr, "node removed"))
        elif lease.node in holder or pmap.state(lease.cidr) not in (FRESH, RELEASED):
            to_free.append(lease)
            changes.append(Change("release", lease.node, pool.name, lease.cidr,
                                  "no longer fits the pool"))
        elif pin is not None and pin != lease.cidr:
            to_free.append(lease)
            changes.append(Change("release", lease.node, pool.name, lease.cidr,
                                  f"node is pinned to {pin}"))
        else:
            pmap.occupy(lease.cidr, lease.node)
            holder[lease.node] = lease
    for lease in to_free:
        if pmap.state(lease.cidr) == LEASED:
            continue  # held by a lease that stays: freeing it would hand it out twice
        # Remembered even when it no longer fits: should the pool take its old shape
        # again, the CIDR is still known as used.
        pmap.remember_release(lease.cidr, seq)
        freed.append(Released(cluster, pool.name, lease.cidr, seq))

    owner_of = {lease.cidr: lease.node for lease in holder.values()}
    for node in nodes:
        pin = pins.get((node, pool.name))
        if pin is None or node in holder:
            continue
        state = pmap.state(pin)
        if state == LEASED:
            raise PinConflict(
                f"node {node}: pinned CIDR {pin} of pool {pool.name} is held by node "
                f"{owner_of.get(pin, '?')}"
            )
        if state == RESERVED:
            raise PinConflict(
                f"node {node}: pinned CIDR {pin} of pool {pool.name} lies in reserved range "
                f"{pmap.reserved_range_of(pin)}"
            )
        pmap.occupy(pin, node)
        owner_of[pin] = node
        holder[node] = Lease(cluster, pool.name, node, pin)
        changes.append(Change("allocate", node, pool.name, pin, "pinned"))

    fresh = [n for n in nodes if n not in holder]
    if len(fresh) > pmap.available:
        raise PoolExhausted(pool.name, pool.cidr, pmap.capacity, len(nodes))
    for node in fresh:
        cidr = pmap.allocate()
        holder[node] = Lease(cluster, pool.name, node, cidr)
        changes.append(Change("allocate", node, pool.name, cidr))

    kept = set(stored)
    for node, lease in holder.items():
        if lease in kept:
            changes.append(Change("keep", node, pool.name, lease.cidr))
        final.append(lease)
