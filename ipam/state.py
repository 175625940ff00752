"""A store's domain state, apart from any store: what it keeps of each cluster, a snapshot
of it, the change a run writes, and how a write applies to a map of clusters.

The planner reads and writes these values; the stores (ipam.store) only keep them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ipam.allocation import Lease, Released
from ipam.net import Address, Cidr
from ipam.pool import Pool


@dataclass(frozen=True, slots=True)
class PoolRecord:
    pool: Pool
    auto: bool = False  # chosen by netplan, not given in the spec: kept while conflict-free


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """What a store keeps of a cluster besides its leases: every range it claims."""

    name: str
    pools: tuple[PoolRecord, ...] = ()
    services: tuple[Cidr, ...] = ()
    services_auto: bool = False
    reserved: tuple[Cidr, ...] = ()
    avoid: tuple[Cidr, ...] = ()
    hosts: tuple[tuple[str, Address], ...] = ()  # (node, address), one per address
    router_ids: tuple[tuple[str, Address], ...] = ()  # (node, BGP router id), one per node
    # Nodes no longer in the spec whose leases were kept (allocate --keep-removed): their
    # addresses stay in hosts, claimed as long as the nodes hold leases.
    kept: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterState:
    record: ClusterRecord | None  # None: leases without a record (an orphaned cluster)
    leases: tuple[Lease, ...] = ()
    history: tuple[Released, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    clusters: Mapping[str, ClusterState] = field(default_factory=dict)
    next_seq: int = 1  # the release sequence number the next write stamps
    # The store's change counter when the snapshot was read: watch(cluster, revision + 1)
    # delivers exactly the lease changes made after it.
    revision: int = 0


@dataclass(frozen=True, slots=True)
class ClusterWrite:
    """One cluster's change, applied atomically (or, on etcd, node by node; see etcd.py)."""

    cluster: str
    record: ClusterRecord | None  # None forgets the cluster, its leases and its history
    delete: tuple[Lease, ...] = ()
    create: tuple[Lease, ...] = ()
    released: tuple[Released, ...] = ()


def apply_write(clusters: dict[str, ClusterState], write: ClusterWrite) -> None:
    """Apply a write to an in-memory map of cluster states (memory store, tests)."""
    if write.record is None:
        clusters.pop(write.cluster, None)
        return
    old = clusters.get(write.cluster, ClusterState(None))
    gone = set(write.delete)
    leases = [lease for lease in old.leases if lease not in gone] + list(write.create)
    history = {(h.pool, h.cidr): h for h in old.history}
    history.update({(h.pool, h.cidr): h for h in write.released})
    clusters[write.cluster] = ClusterState(
        write.record, tuple(sorted(leases)), tuple(sorted(history.values()))
    )
