"""plan = f(spec, stored state): ranges resolved, conflicts proven absent, leases allocated.

Pure: the store hands in a snapshot and applies the `ClusterWrite` this returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ipam.allocation import Allocation, Change, Lease, PoolUsage, plan_allocation
from ipam.conflicts import (
    AVOID,
    HOST,
    POOL,
    RESERVED,
    SERVICES,
    Claim,
    conflicts,
    describe_conflict,
    forbidden,
)
from ipam.errors import InvalidInput, RangeConflict, Unsatisfiable
from ipam.gcpause import gc_paused
from ipam.net import Address, Cidr, parse_cidr
from ipam.pool import Pool
from ipam.state import ClusterRecord, ClusterWrite, PoolRecord, Snapshot
from planner.spec import DEFAULT_SERVICES, PRESETS, Spec

# Where an automatic IPv4 pool may go after the presets' defaults, in order (RFC 1918).
PRIVATE_RANGES = tuple(parse_cidr(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
SERVICES_SPACE = parse_cidr("10.0.0.0/8")


@dataclass(frozen=True, slots=True)
class Chosen:
    field: str
    cidr: Cidr
    reason: str


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    router_id: Address
    addresses: tuple[Address, ...]
    pod_cidrs: tuple[Cidr, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    cluster: str
    usage: tuple[PoolUsage, ...]
    services: tuple[Cidr, ...]
    nodes: tuple[NodeView, ...]
    changes: tuple[Change, ...]
    chosen: tuple[Chosen, ...]
    warnings: tuple[str, ...]
    record: ClusterRecord
    allocation: Allocation

    def write(self) -> ClusterWrite | None:
        """What the store must apply; None when it already matches."""
        gone = tuple(
            Lease(self.cluster, c.pool, c.node, c.cidr)
            for c in self.changes if c.action == "release"
        )
        new = tuple(
            Lease(self.cluster, c.pool, c.node, c.cidr)
            for c in self.changes if c.action == "allocate"
        )
        return ClusterWrite(self.cluster, self.record, gone, new, self.allocation.released)


KEPT_SHOWN = 10  # kept leases named in the plan's warning


def build_plan(spec: Spec, snapshot: Snapshot, keep_removed: bool = False) -> Plan:
    with gc_paused():
        return _build_plan(spec, snapshot, keep_removed)


def _build_plan(spec: Spec, snapshot: Snapshot, keep_removed: bool) -> Plan:
    stored = snapshot.clusters.get(spec.cluster)
    previous = stored.record if stored else None
    foreign = list(_foreign_claims(spec.cluster, snapshot))
    leases = stored.leases if stored else ()
    kept = _kept(spec, leases) if keep_removed else ()
    kept_hosts, kept_router_ids = _kept_part(previous, kept)
    own = list(_fixed_claims(spec)) + [
        Claim(HOST, f"node {node} (kept)", addr.as_cidr(), spec.cluster)
        for node, addr in kept_hosts]
    _raise_on_conflict(own, foreign)

    chosen: list[Chosen] = []
    pools = _resolve_pools(spec, previous, own, foreign, chosen)
    services = _resolve_services(spec, previous, own, foreign, chosen)
    _check_reserved(spec, pools)
    pins = _pins(spec, pools)

    history = stored.history if stored else ()
    allocation = plan_allocation(
        spec.cluster, [p.pool for p in pools], spec.reserved, [n.name for n in spec.nodes],
        pins, leases, history, snapshot.next_seq, keep_removed,
    )
    if kept:  # a kept lease that no longer fits its pool is released: that node goes
        holding = {x.node for x in allocation.leases}
        kept = tuple(n for n in kept if n in holding)
        kept_hosts, kept_router_ids = _kept_part(previous, kept)
    record = ClusterRecord(
        spec.cluster,
        tuple(pools),
        services,
        not spec.services,
        spec.reserved,
        spec.avoid,
        tuple((n.name, a) for n in spec.nodes for a in n.addresses) + kept_hosts,
        tuple((n.name, n.router_id) for n in spec.nodes) + kept_router_ids,
        kept,
    )
    order = {p.pool.name: i for i, p in enumerate(pools)}
    by_node: dict[str, list[Cidr]] = {}
    # A stable sort by pool keeps each node's CIDRs in the spec's pool order.
    for lease in sorted(allocation.leases, key=lambda x: order.get(x.pool, len(order))):
        by_node.setdefault(lease.node, []).append(lease.cidr)
    nodes = tuple(NodeView(n.name, n.router_id, n.addresses, tuple(by_node.get(n.name, ())))
                  for n in spec.nodes)
    in_spec = {n.name for n in spec.nodes}
    warnings = list(spec.warnings)
    kept_leases = [c for c in allocation.changes if c.action == "keep" and c.node not in in_spec]
    if kept_leases:
        # One warning, not one a lease: a cluster drained in parts may keep thousands.
        shown = ", ".join(f"{c.node} ({c.pool} {c.cidr})" for c in kept_leases[:KEPT_SHOWN])
        more = len(kept_leases) - KEPT_SHOWN
        warnings.append(f"{len(kept_leases)} lease{'s' if len(kept_leases) > 1 else ''} of "
                        f"removed nodes kept: {shown}" + (f" and {more} more" if more > 0 else ""))
    return Plan(spec.cluster, allocation.usage, services, nodes, allocation.changes,
                tuple(chosen), tuple(warnings), record, allocation)


def _kept(spec: Spec, leases) -> tuple[str, ...]:
    """The nodes out of the spec whose leases --keep-removed keeps, by name."""
    in_spec = {n.name for n in spec.nodes}
    return tuple(sorted({x.node for x in leases} - in_spec))


def _kept_part(record: ClusterRecord | None, kept: tuple[str, ...]
               ) -> tuple[tuple[tuple[str, Address], ...], tuple[tuple[str, Address], ...]]:
    """The stored addresses and router ids of kept nodes, in the order of `kept`: still
    theirs while they hold leases."""
    if record is None or not kept:
        return (), ()
    addresses: dict[str, list[Address]] = {}
    for node, addr in record.hosts:
        addresses.setdefault(node, []).append(addr)
    router_ids = dict(record.router_ids)
    return (tuple((n, a) for n in kept for a in addresses.get(n, ())),
            tuple((n, router_ids[n]) for n in kept if n in router_ids))


# --- claims ------------------------------------------------------------------------------


def _foreign_claims(cluster: str, snapshot: Snapshot) -> Iterator[Claim]:
    for name, state in snapshot.clusters.items():
        if name == cluster or state.record is None:
            continue
        yield from record_claims(state.record)


def record_claims(record: ClusterRecord) -> Iterator[Claim]:
    """The ranges a stored cluster claims, for conflict checks across clusters."""
    c = record.name
    for p in record.pools:
        yield Claim(POOL, f"pool {p.pool.name}", p.pool.cidr, c)
    for s in record.services:
        yield Claim(SERVICES, "services range", s, c)
    for a in record.avoid:
        yield Claim(AVOID, "avoid range", a, c)
    for r in record.reserved:
        yield Claim(RESERVED, "reserved range", r, c)
    for node, addr in record.hosts:
        yield Claim(HOST, f"node {node}", addr.as_cidr(), c)


def _fixed_claims(spec: Spec) -> Iterator[Claim]:
    """The ranges the spec gives explicitly."""
    c = spec.cluster
    for p in spec.pools:
        if p.cidr is not None:
            yield Claim(POOL, f"{p.field} ({p.name})", p.cidr, c)
    for i, s in enumerate(spec.services):
        yield Claim(SERVICES, "services.cidr" if len(spec.services) == 1
                    else f"services.cidrs[{i}]", s, c)
    for i, a in enumerate(spec.avoid):
        yield Claim(AVOID, f"avoid[{i}]", a, c)
    for i, r in enumerate(spec.reserved):
        yield Claim(RESERVED, f"reserved[{i}]", r, c)
    for n in spec.nodes:
        for a in n.addresses:
            yield Claim(HOST, f"node {n.name}", a.as_cidr(), c)


def _raise_on_conflict(own: list[Claim], foreign: list[Claim]) -> None:
    own_ids = {id(c) for c in own}
    found = [
        (a, b) for a, b in conflicts(own + foreign) if id(a) in own_ids or id(b) in own_ids
    ]
    if found:
        a, b = found[0]
        extra = len(found) - 1
        more = f" (and {extra} more conflict{'s' if extra > 1 else ''})" if extra else ""
        raise RangeConflict(describe_conflict(a, b) + more)


def _first_clash(candidate: Claim, claims: list[Claim]) -> Claim | None:
    for other in claims:
        if candidate.cidr.overlaps(other.cidr) and forbidden(candidate, other):
            return other
    return None


# --- automatic ranges --------------------------------------------------------------------


def _resolve_pools(spec, previous, own, foreign, chosen) -> list[PoolRecord]:
    kept = {p.pool.name: p for p in previous.pools if p.auto} if previous else {}
    resolved = []
    for p in spec.pools:
        if p.cidr is not None:
            resolved.append(PoolRecord(Pool(p.name, p.cidr, p.node_mask)))
            continue
        field = f"{p.field}.cidr"
        label = f"{p.field} ({p.name})"
        candidates: list[tuple[Cidr, str]] = []
        old = kept.get(p.name)
        if old is not None:
            candidates.append((old.pool.cidr, "kept from the store, conflict-free"))
        first, second = spec.preset, next(v for v in PRESETS.values() if v is not spec.preset)
        candidates.append((first.cidr, f"{first.name} preset default, conflict-free"))
        cidr, reason = _first_free(
            label, candidates + [(second.cidr, f"{second.name} preset default "
                                  f"({first.cidr} conflicts)")],
            first.cidr.prefixlen, own + foreign, spec.cluster,
        )
        if cidr is None:
            raise Unsatisfiable(
                f"{field}: no conflict-free /{first.cidr.prefixlen} is left for an automatic "
                f"pool in {', '.join(str(r) for r in PRIVATE_RANGES)}"
            )
        own.append(Claim(POOL, label, cidr, spec.cluster))
        chosen.append(Chosen(field, cidr, reason))
        resolved.append(PoolRecord(Pool(p.name, cidr, p.node_mask), auto=True))
    return resolved


def _first_free(label, candidates, prefixlen, claims, cluster):
    for cidr, reason in candidates:
        if _first_clash(Claim(POOL, label, cidr, cluster), claims) is None:
            return cidr, reason
    for space in PRIVATE_RANGES:
        if space.prefixlen > prefixlen:
            continue
        for i in range(1 << (prefixlen - space.prefixlen)):
            cidr = space.subnet(prefixlen, i)
            if _first_clash(Claim(POOL, label, cidr, cluster), claims) is None:
                return cidr, (f"presets' defaults conflict; lowest conflict-free /{prefixlen} "
                              f"in {space}")
    return None, ""


def _resolve_services(spec, previous, own, foreign, chosen) -> tuple[Cidr, ...]:
    if spec.services:
        return spec.services
    default = parse_cidr(DEFAULT_SERVICES)
    claims = own + foreign
    candidates: list[tuple[Cidr, str]] = []
    if previous is not None and previous.services_auto and previous.services:
        candidates.append((previous.services[0], "kept from the store, conflict-free"))
    candidates.append((default, "default, conflict-free"))
    start = (default.value - SERVICES_SPACE.value) >> (32 - default.prefixlen)
    count = 1 << (default.prefixlen - SERVICES_SPACE.prefixlen)
    for step in range(1, count):
        cidr = SERVICES_SPACE.subnet(default.prefixlen, (start + step) % count)
        candidates.append((cidr, f"{default} conflicts; next free /{default.prefixlen} in "
                           f"{SERVICES_SPACE}"))
    for cidr, reason in candidates:
        claim = Claim(SERVICES, "services.cidr", cidr, spec.cluster)
        if _first_clash(claim, claims) is None:
            own.append(claim)
            chosen.append(Chosen("services.cidr", cidr, reason))
            return (cidr,)
    raise Unsatisfiable(f"services.cidr: no conflict-free /{default.prefixlen} is left in "
                        f"{SERVICES_SPACE}")


# --- references into the resolved pools --------------------------------------------------


def _check_reserved(spec: Spec, pools: list[PoolRecord]) -> None:
    for i, r in enumerate(spec.reserved):
        if not any(p.pool.cidr.contains(r) for p in pools):
            raise InvalidInput(f"reserved[{i}]", str(r), "is not inside a pool")


def _pins(spec: Spec, pools: list[PoolRecord]) -> dict[tuple[str, str], Cidr]:
    pins: dict[tuple[str, str], Cidr] = {}
    for n in spec.nodes:
        for j, cidr in enumerate(n.pins):
            path = f"{n.field}.podCIDRs[{j}]"
            home = next((p.pool for p in pools if p.pool.cidr.contains(cidr)), None)
            if home is None:
                raise InvalidInput(path, str(cidr), "is not inside any pool")
            if cidr.prefixlen != home.node_mask:
                raise InvalidInput(path, str(cidr),
                                   f"is not a /{home.node_mask}, the nodeMaskSize of pool "
                                   f"{home.name}")
            if (n.name, home.name) in pins:
                raise InvalidInput(path, str(cidr),
                                   f"is a second pinned CIDR in pool {home.name} (one per pool)")
            pins[(n.name, home.name)] = cidr
    return pins
