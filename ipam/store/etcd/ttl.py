"""TTL leases (flannel-style nodes): a node's lease keys tied to an etcd lease that its
speaker keeps alive; when it stops, etcd deletes them and the CIDRs are free.

Each tied lease also gets a key `<cluster>/ttl/<pool>/<node>` without the etcd lease, so
that a read can tell a lease etcd expired from one never handed out, and state its release
in the history (layout.parse) for the cluster's next write to keep: freed CIDRs are reused
last, expired ones too. Any later write that rewrites the node's leases makes them permanent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ipam.errors import InvalidInput, StoreConflict, StoreError
from ipam.state import Snapshot
from ipam.store.codec import lease_to_json
from ipam.store.etcd.kv import KV, Compare, Delete, Op, Put
from ipam.store.etcd.layout import Keys, Meta

# Races lost in a row (none of our writes landing in between) before a run gives up.
MAX_CONFLICTS = 50


@dataclass
class TtlLease:
    """An etcd lease holding one node's lease keys."""

    _kv: KV
    id: int
    ttl: int
    cluster: str
    node: str

    def keepalive(self) -> int:
        """Refresh the lease; the seconds it now has. StoreError once etcd expired it."""
        left = self._kv.refresh(self.id)
        if left <= 0:
            raise StoreError(f"etcd lease {self.id:x} of node {self.node} in cluster "
                             f"{self.cluster} has expired: its CIDRs are released")
        return left


def attach(kv: KV, keys: Keys, read: Callable[[], tuple[Snapshot, Meta]], cluster: str,
           node: str, ttl: int) -> tuple[TtlLease, int]:
    """Tie a node's leases to a fresh etcd lease of ttl seconds: (the lease, the races lost
    on the way)."""
    if ttl < 1:
        raise InvalidInput("ttl", ttl, "must be at least 1 second")
    granted = kv.grant(ttl)
    guard = keys.guard(cluster)
    for lost in range(MAX_CONFLICTS):
        snapshot, meta = read()
        state = snapshot.clusters.get(cluster)
        mine = [x for x in (state.leases if state else ()) if x.node == node]
        if not mine:
            kv.revoke(granted)
            raise InvalidInput("node", node, f"holds no lease in cluster {cluster}")
        ops: list[Op] = []
        for x in mine:
            ops += [Put(keys.lease(x), lease_to_json(x), granted),
                    Put(keys.ttl(x), lease_to_json(x))]
            if meta.lease_keys[x] != keys.lease(x):  # at its key of the old layout
                ops.append(Delete(meta.lease_keys[x]))
        reply = kv.txn([Compare(guard, "mod", meta.guards.get(cluster, 0))],
                       [*ops, Put(guard, "")])
        if reply.succeeded:
            return TtlLease(kv, granted, ttl, cluster, node), lost
        time.sleep(random.uniform(0, 0.05))
    raise StoreConflict(f"etcd {kv.where}: cluster {cluster}: could not tie node {node} to "
                        f"a lease: lost {MAX_CONFLICTS} races in a row")
