"""A cluster write cut into etcd transactions: pure, a write in, neutral operations out.

A run writes its plan in batches of at most 128 operations (etcd's default --max-txn-ops),
each compared and swapped on its own (store.py). Batch contents keep the store consistent
whatever batch a run dies after:
- the record and then the node pages go first, so that a run's leases always belong to a
  recorded cluster and a lease of a node in the spec always comes with the node's addresses
  (a node that leaves may lose its entry before its lease: read, that is a kept node, and
  the next run completes). When the pages take more than one batch, a node may be named by
  a new page and an old one not yet deleted: the page written last wins;
- a node's deletes, creates and the history of the CIDRs it frees share a batch, so no node
  is half-applied and no freed CIDR loses its history; a node that takes an address another
  node frees (the same CIDR, or one that covers or lies in it, when a mask or a pool changed)
  comes in the same batch or a later one, and nodes that take each other's addresses share
  a batch, so no two leases ever overlap;
- a lease still at a key of the old layout moves to its new key in its node's batch.
A batch that writes the record, or a node page with addresses its nodes did not have,
claims ranges: it goes through the store's global guard (store.py).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator
from typing import NamedTuple

from ipam.allocation import Lease
from ipam.errors import StoreError
from ipam.state import ClusterWrite
from ipam.store.codec import lease_to_json, record_to_json
from ipam.store.etcd.kv import MAX_TXN_OPS, Delete, Op, Put, prefix_end
from ipam.store.etcd.layout import MARK, Keys, Meta, Page, released_json, split

# Every batch ends with the cluster guard's put and may bump the global guard; the last
# may let the writers' lock go.
GUARD_OPS = 3
# Keys and values a transaction carries at most: etcd refuses requests above 1.5 MiB
# (--max-request-bytes); 126 node pages of a few KiB each stay well below it.
BATCH_BYTES = 1 << 20


class Batch(NamedTuple):
    claims: bool  # writes ranges other clusters must see: compared on the global guard
    ops: list[Op]


def forget_ops(keys: Keys, cluster: str) -> list[Op]:
    """What forgets a cluster: every kind of key netplan keeps under its name, by range,
    but not the writers queued on its lock, and nothing netplan did not write."""
    ops: list[Op] = [Delete(keys.of(cluster, kind)) for kind in ("record", "guard")]
    for kind in ("nodes", "leases", "released", "ttl"):
        folder = keys.of(cluster, kind, "")
        ops.append(Delete(folder, prefix_end(folder)))
    return ops


def _page_ops(keys: Keys, cluster: str, pages: dict[str, Page | None], meta: Meta
              ) -> list[tuple[list[Op], bool]]:
    """The operations bringing the stored node pages to `pages`, a page at a time:
    (its operations, whether they claim an address its nodes did not have)."""
    stored = meta.pages.get(cluster, {})
    had = meta.entries.get(cluster, {})
    units: list[tuple[list[Op], bool]] = []
    for first, page in pages.items():
        key = keys.of(cluster, "nodes", first)
        if page is not None and stored.get(key) != page.value.encode():
            claims = any(node not in had or not new <= set(had[node].addresses)
                         for node, new in page.addresses.items())
            units.append(([Put(key, page.value)], claims))
    names = {keys.of(cluster, "nodes", first) for first in pages}
    units += [([Delete(key)], False) for key in sorted(stored.keys() - names)]
    return units


def _movers(write: ClusterWrite) -> list[list[str]]:
    """The nodes of a write in groups, in the order they must land: a node that takes an
    address (a CIDR, or one that covers or lies in it: a mask or pool changed) that another
    node frees lands with it or after it, so that no two leases ever overlap in the store;
    nodes that take each other's addresses (a cycle) land together. Every other node is a
    group of its own. Ties go by node name."""
    nodes = sorted({x.node for x in write.delete} | {x.node for x in write.create})
    # The freed CIDRs of a store do not overlap, so sorted by first address their ends rise.
    freed = sorted((x.cidr.version, x.cidr.first, x.cidr.last, x.node) for x in write.delete)
    starts = [(version, first) for version, first, _, _ in freed]
    takers: dict[str, set[str]] = {node: set() for node in nodes}  # frees -> must come after
    for x in write.create:
        cidr = x.cidr
        i = bisect.bisect_right(starts, (cidr.version, cidr.last))
        while i > 0 and freed[i - 1][0] == cidr.version and freed[i - 1][2] >= cidr.first:
            if freed[i - 1][3] != x.node:
                takers[freed[i - 1][3]].add(x.node)
            i -= 1
    return _components(nodes, takers)


def _components(nodes: list[str], after: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of the graph (Tarjan's algorithm, without
    recursion: a cluster may have 65,536 nodes), each sorted, in topological order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> tuple[str, Iterator[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter(sorted(after[node]))

    for root in nodes:
        if root in index:
            continue
        work = [visit(root)]
        while work:
            node, edges = work[-1]
            for other in edges:
                if other not in index:
                    work.append(visit(other))
                    break
                if other in on_stack:
                    low[node] = min(low[node], index[other])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(sorted(component))
    # Topological order of the components, by name where the graph leaves it open
    # (Kahn's algorithm on a heap): the nodes of a plain run land in name order.
    component_of = {node: i for i, component in enumerate(found) for node in component}
    needs = [0] * len(found)
    then: list[set[int]] = [set() for _ in found]
    for node, others in after.items():
        for other in others:
            a, b = component_of[node], component_of[other]
            if a != b and b not in then[a]:
                then[a].add(b)
                needs[b] += 1
    ready = [(component[0], i) for i, component in enumerate(found) if not needs[i]]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, i = heapq.heappop(ready)
        ordered.append(found[i])
        for j in then[i]:
            needs[j] -= 1
            if not needs[j]:
                heapq.heappush(ready, (found[j][0], j))
    return ordered


def plan_batches(keys: Keys, write: ClusterWrite, meta: Meta,
                 max_txn_ops: int = MAX_TXN_OPS) -> list[Batch]:
    """The write's operations cut into transactions of at most max_txn_ops operations,
    groups kept whole (see the top)."""
    assert write.record is not None
    cluster = write.cluster
    tied = meta.ttl.get(cluster, {})
    cut = split(write.record, meta.entries.get(cluster, {}), meta.page_entries.get(cluster, {}))
    small, pages = cut if cut is not None else (write.record, {})
    # (nodes, their operations, whether these claim ranges), written in this order.
    groups: list[tuple[list[str], list[Op], bool]] = []
    if not meta.marked:
        groups.append(([], [Put(keys.mark, MARK)], False))
    record = record_to_json(small)
    if meta.records.get(cluster) != record.encode():
        groups.append(([], [Put(keys.of(cluster, "record"), record)], True))
    groups += [([], ops, claims) for ops, claims in _page_ops(keys, cluster, pages, meta)]
    # History of TTL leases etcd expired: written, and their ttl keys dropped.
    for entry, key in meta.expired.get(cluster, ()):
        groups.append(([], [Put(keys.released(entry), released_json(entry)), Delete(key)],
                       False))

    deletes: dict[str, list[Lease]] = {}
    creates: dict[str, list[Lease]] = {}
    for x in write.delete:
        deletes.setdefault(x.node, []).append(x)
    for x in write.create:
        creates.setdefault(x.node, []).append(x)
    gone = set(write.delete)
    moving: dict[str, list[Lease]] = {}
    for x in meta.moved.get(cluster, ()):
        if x not in gone:
            moving.setdefault(x.node, []).append(x)
    movers = _movers(write)
    movers += [[node] for node in sorted(moving.keys() - deletes.keys() - creates.keys())]

    history = {(x.pool, x.cidr): x for x in write.released}
    for nodes in movers:
        ops: list[Op] = []
        for node in nodes:
            puts = [(keys.lease(x), x) for x in creates.get(node, ())]
            put_keys = {key for key, _ in puts}
            for x in deletes.get(node, ()):
                key = meta.lease_keys.get(x, keys.lease(x))
                # etcd refuses a delete and a put of one key in a transaction: the put
                # (the node's new CIDR in the same pool) replaces the old lease anyway.
                if key not in put_keys:
                    ops.append(Delete(key))
                if (x.pool, node) in tied:
                    ops.append(Delete(tied[(x.pool, node)][1]))
                entry = history.pop((x.pool, x.cidr), None)
                if entry is not None:
                    ops.append(Put(keys.released(entry), released_json(entry)))
            ops += [Put(key, lease_to_json(x)) for key, x in puts]
            for x in moving.get(node, ()):
                # New key first: of the lease's two keys one always exists. It keeps the
                # etcd lease it had (a TTL node stays one).
                ops += [Put(keys.lease(x), lease_to_json(x), meta.attached.get(x, 0)),
                        Delete(meta.lease_keys[x])]
        groups.append((nodes, ops, False))
    # History without a lease deleted in this write: no node to go with, any batch will do.
    groups += [([], [Put(keys.released(e), released_json(e))], False)
               for e in history.values()]
    return _cut(cluster, groups, max_txn_ops)


def _cut(cluster: str, groups: list[tuple[list[str], list[Op], bool]], max_txn_ops: int
         ) -> list[Batch]:
    room_ops = max_txn_ops - GUARD_OPS
    batches: list[Batch] = []
    room = room_bytes = 0
    for nodes, ops, claims in groups:
        if len(ops) > room_ops:
            raise StoreError(
                f"cluster {cluster}: node {nodes[0]} (with {len(nodes) - 1} others its "
                f"CIDRs move between) needs {len(ops)} operations in one transaction, "
                f"more than a transaction holds ({room_ops} beside the guards, etcd's "
                f"--max-txn-ops {max_txn_ops})")
        size = sum(len(op.key) + len(op.value) if isinstance(op, Put) else len(op.key)
                   for op in ops)
        if len(ops) > room or size > room_bytes:
            batches.append(Batch(False, []))
            room, room_bytes = room_ops, BATCH_BYTES
        if claims and not batches[-1].claims:
            batches[-1] = Batch(True, batches[-1].ops)
        batches[-1].ops.extend(ops)
        room -= len(ops)
        room_bytes -= size
    return batches
