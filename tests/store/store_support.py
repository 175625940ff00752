"""Plans for driving a Store directly (pure, re-runnable, as the planner's are) and a
watch reader that fails instead of hanging; used by the contract suite and the etcd tests."""

from __future__ import annotations

import queue
import threading

import pytest

from ipam.allocation import Lease, Released, plan_allocation
from ipam.net import parse_cidr
from ipam.pool import Pool
from ipam.state import ClusterRecord, ClusterWrite, PoolRecord, Snapshot
from ipam.store import LeaseEvent

POOL = Pool("pods", parse_cidr("10.244.0.0/16"), 24)


def record(cluster: str, pool: Pool = POOL) -> ClusterRecord:
    return ClusterRecord(cluster, (PoolRecord(pool),))


def allocate(cluster: str, nodes, keep_removed: bool = True, pool: Pool = POOL, pins=None):
    """A plan (pure, re-runnable) that gives every node a CIDR, as the planner does;
    pins maps a node to the CIDR it must have."""

    def plan(snapshot: Snapshot):
        state = snapshot.clusters.get(cluster)
        pinned = {(node, pool.name): parse_cidr(c) for node, c in (pins or {}).items()}
        alloc = plan_allocation(cluster, [pool], (), nodes, pinned,
                                state.leases if state else (), state.history if state else (),
                                snapshot.next_seq, keep_removed)
        gone = tuple(Lease(cluster, c.pool, c.node, c.cidr)
                     for c in alloc.changes if c.action == "release")
        new = tuple(Lease(cluster, c.pool, c.node, c.cidr)
                    for c in alloc.changes if c.action == "allocate")
        return ClusterWrite(cluster, record(cluster, pool), gone, new, alloc.released), alloc

    return plan


def release(cluster: str, nodes):
    def plan(snapshot: Snapshot):
        state = snapshot.clusters[cluster]
        freed = tuple(x for x in state.leases if x.node in nodes)
        history = tuple(Released(cluster, x.pool, x.cidr, snapshot.next_seq) for x in freed)
        return ClusterWrite(cluster, state.record, freed, (), history), freed

    return plan


def forget(cluster: str):
    return lambda snapshot: (ClusterWrite(cluster, None), None)


def cidrs(snapshot: Snapshot, cluster: str) -> dict[str, str]:
    return {x.node: str(x.cidr) for x in snapshot.clusters[cluster].leases}


def take(watch, n: int, timeout: float = 20) -> list[LeaseEvent]:
    """n events from a watch, read in a thread so that a missing event fails, not hangs."""
    got: queue.Queue = queue.Queue()

    def run():
        try:
            for _ in range(n):
                got.put(next(watch))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            got.put(exc)

    threading.Thread(target=run, daemon=True).start()
    events = []
    for _ in range(n):
        try:
            item = got.get(timeout=timeout)
        except queue.Empty:
            watch.close()
            pytest.fail(f"only {len(events)} of {n} watch events arrived: {events}")
        if isinstance(item, BaseException):
            raise item
        events.append(item)
    return events


def summary(events) -> list[tuple[str, str, str]]:
    return [(e.kind, e.lease.node, str(e.lease.cidr)) for e in events]
