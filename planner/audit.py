"""`netplan check`: an audit of everything a store holds, independent of any spec."""

from __future__ import annotations

from ipam.allocation import Lease
from ipam.conflicts import LEASE, Claim, conflicts, describe_conflict
from ipam.pool import PoolMap
from ipam.state import Snapshot
from planner.plan import record_claims

LISTED = 5  # leases an interrupted run's finding names; it counts the rest


def audit(snapshot: Snapshot) -> dict:
    problems: list[dict] = []
    warnings: list[str] = []
    claims: list[Claim] = []
    lease_count = 0
    for name, state in snapshot.clusters.items():
        record = state.record
        lease_count += len(state.leases)
        if record is None:
            problems.append({"kind": "orphan", "cluster": name,
                             "message": f"cluster {name} holds {len(state.leases)} leases "
                                        "but has no stored record"})
            continue
        claims.extend(record_claims(record))
        maps = {p.pool.name: PoolMap(p.pool, record.reserved) for p in record.pools}
        recorded = {node for node, _ in record.hosts}  # in the spec, or kept
        # Leases of nodes out of the spec: kept on request (listed as kept), or left by an
        # interrupted run (not in the record at all).
        in_spec = recorded - set(record.kept)
        unmoved: list[tuple[Lease, str]] = []
        for lease in state.leases:
            claims.append(Claim(LEASE, f"lease of node {lease.node} in pool {lease.pool}",
                                lease.cidr, name))
            misfit = _misfit(lease, maps)
            if misfit is not None:
                kind, why = misfit
                if lease.node in recorded:
                    unmoved.append((lease, why))
                else:
                    problems.append({"kind": kind, "cluster": name,
                                     "message": f"{_where(lease)} {why}"})
            if lease.node not in in_spec:
                warnings.append(f"{_where(lease)}: the node is not in the cluster's spec "
                                "(kept removed)")
        if unmoved:
            problems.append({"kind": "interrupted", "cluster": name,
                             "message": _interrupted(name, unmoved)})
    for a, b in conflicts(claims):
        problems.append({"kind": "overlap", "cluster": a.cluster,
                         "message": describe_conflict(a, b)})
    return {
        "clusters": len(snapshot.clusters),
        "leases": lease_count,
        "problems": problems,
        "warnings": warnings,
    }


def _where(lease: Lease) -> str:
    return f"cluster {lease.cluster}: lease of node {lease.node} ({lease.pool} {lease.cidr})"


def _misfit(lease: Lease, maps: dict[str, PoolMap]) -> tuple[str, str] | None:
    """(kind, why) when the lease does not fit its pool as the record states it."""
    pmap = maps.get(lease.pool)
    if pmap is None:
        return "orphan", f"names pool {lease.pool}, which is not in the cluster"
    if pmap.state(lease.cidr) is None:
        return "out-of-pool", f"is not a /{pmap.pool.node_mask} inside {pmap.pool.cidr}"
    if not pmap.fits(lease.cidr):
        return "reserved", "lies in a reserved range"
    return None


def _interrupted(cluster: str, unmoved: list[tuple[Lease, str]]) -> str:
    """The finding for leases of recorded nodes that do not fit their pools.

    netplan writes a lease only where its pool, as recorded at the time, allows it, and it
    writes a cluster's record before its leases; a re-plan releases and reallocates every
    lease that no longer fits. So a recorded node's lease that does not fit was written
    under an earlier record, by a run that wrote the new record and stopped before the
    node's batch (etcd writes a run in batches: DESIGN section 3). The store is consistent,
    not corrupt, and the next `allocate` moves these leases. It stays a problem (exit 1):
    until then the leases and the spec disagree, and a `check` run as a probe must not
    pass over a run that nobody has completed.
    """
    named = "; ".join(f"node {x.node} ({x.pool} {x.cidr} {why})" for x, why in unmoved[:LISTED])
    more = f"; and {len(unmoved) - LISTED} more" if len(unmoved) > LISTED else ""
    return (f"cluster {cluster}: interrupted run: rerun `netplan allocate` with the "
            f"cluster's spec: a run that changed its pools stopped before it moved "
            f"{len(unmoved)} leases of its nodes, which do not fit the pools recorded now "
            f"(the record is written first; the store is not corrupt): {named}{more}")
