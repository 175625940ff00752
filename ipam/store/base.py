"""The Store interface: a snapshot to read, and one atomic read-plan-write step.

Like Calico's IPAM, the pure logic never talks to the datastore: a store hands the planner a
snapshot inside its own transaction (SQLite) or at a revision (etcd), and applies what the
planner decided as one write, compare-and-swap where the back end needs it, re-running the
planner from fresh state when another writer got there first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from ipam.allocation import Lease, Released
from ipam.net import Address, Cidr
from ipam.pool import Pool

R = TypeVar("R")


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


@dataclass(frozen=True, slots=True)
class ClusterState:
    record: ClusterRecord | None  # None: leases without a record (an orphaned cluster)
    leases: tuple[Lease, ...] = ()
    history: tuple[Released, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    clusters: Mapping[str, ClusterState] = field(default_factory=dict)
    next_seq: int = 1  # the release sequence number the next write stamps


@dataclass(frozen=True, slots=True)
class ClusterWrite:
    """One cluster's change, applied atomically (or, on etcd, node by node; see etcd.py)."""

    cluster: str
    record: ClusterRecord | None  # None forgets the cluster, its leases and its history
    delete: tuple[Lease, ...] = ()
    create: tuple[Lease, ...] = ()
    released: tuple[Released, ...] = ()


class Store(ABC):
    """A lease store. Implementations: memory, sqlite, etcd."""

    url: str

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Everything the store holds; never creates the store."""

    @abstractmethod
    def update(self, plan: Callable[[Snapshot], tuple[ClusterWrite | None, R]]) -> R:
        """Run plan on a fresh snapshot and apply its write atomically; return its result.

        plan must be pure: a store may run it again when a concurrent writer won a race.
        """

    def close(self) -> None:
        """Release connections; the default store holds none."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
