"""`netplan release`: free the leases of named nodes, or forget a whole cluster."""

from __future__ import annotations

from ipam.allocation import Lease, Released
from ipam.errors import InvalidInput
from ipam.store.base import ClusterWrite, Snapshot


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
    return ClusterWrite(cluster, state.record, freed, (), history), (freed, missing)
