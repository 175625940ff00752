"""`netplan check`: an audit of everything a store holds, independent of any spec."""

from __future__ import annotations

from ipam.conflicts import LEASE, Claim, conflicts, describe_conflict
from ipam.pool import PoolMap
from ipam.state import Snapshot
from planner.plan import record_claims


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
        # Leases of nodes out of the spec: kept on request (listed as kept), or left by an
        # interrupted run (not in the record at all).
        in_spec = {node for node, _ in record.hosts} - set(record.kept)
        for lease in state.leases:
            claims.append(Claim(LEASE, f"lease of node {lease.node} in pool {lease.pool}",
                                lease.cidr, name))
            pmap = maps.get(lease.pool)
            where = f"cluster {name}: lease of node {lease.node} ({lease.pool} {lease.cidr})"
            if pmap is None:
                problems.append({"kind": "orphan", "cluster": name,
                                 "message": f"{where}: pool {lease.pool} is not in the cluster"})
            elif pmap.state(lease.cidr) is None:
                problems.append({"kind": "out-of-pool", "cluster": name,
                                 "message": f"{where} is not a /{pmap.pool.node_mask} "
                                            f"inside {pmap.pool.cidr}"})
            elif not pmap.fits(lease.cidr):
                problems.append({"kind": "reserved", "cluster": name,
                                 "message": f"{where} lies in a reserved range"})
            if lease.node not in in_spec:
                warnings.append(f"{where}: the node is not in the cluster's spec (kept removed)")
    for a, b in conflicts(claims):
        problems.append({"kind": "overlap", "cluster": a.cluster,
                         "message": describe_conflict(a, b)})
    return {
        "clusters": len(snapshot.clusters),
        "leases": lease_count,
        "problems": problems,
        "warnings": warnings,
    }
