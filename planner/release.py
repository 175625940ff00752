"""`netplan release`: free the leases of named nodes, or forget a whole cluster."""

from __future__ import annotations

from dataclasses import replace

from ipam.allocation import Lease, Released
from ipam.errors import InvalidInput
from ipam.state import ClusterWrite, Snapshot


def release_write(
    snapshot: Snapshot, cluster: str, nodes: list[str], everything: bool
) -> tuple[ClusterWrite | None, tuple[tuple[Lease, ...], list[str]]]:
    """The write that releases nodes' leases, the leases freed, and the nodes that held none."""
    state = snapshot.clusters.get(cluster)
    if state is None:
        raise InvalidInput("--cluster", cluster, "is not a cluster of the store")
    if everything:
        return ClusterWrite(cluster, None), (state.leases, [])
    wanted = set(nodes)
    freed = tuple(lease for lease in state.leases if lease.node in wanted)
    held = {lease.node for lease in freed}
    missing = [n for n in nodes if n not in held]
    if not freed:
        return None, (freed, missing)
    history = tuple(Released(cluster, x.pool, x.cidr, snapshot.next_seq) for x in freed)
    record = state.record
    if record is not None and held & set(record.kept):
        # A kept node released for good: its addresses are no longer claimed.
        gone = held & set(record.kept)
        record = replace(record, hosts=tuple(x for x in record.hosts if x[0] not in gone),
                         router_ids=tuple(x for x in record.router_ids if x[0] not in gone),
                         kept=tuple(n for n in record.kept if n not in gone))
    return ClusterWrite(cluster, record, freed, (), history), (freed, missing)
