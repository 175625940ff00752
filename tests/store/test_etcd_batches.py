"""The etcd store's batches on the in-memory key-value layer, cut after every transaction:
what a killed run leaves must never hold two overlapping leases."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from store_support import allocate

from ipam.errors import StoreUnavailable
from ipam.net import parse_cidr
from ipam.pool import Pool
from ipam.store import StoreOptions
from ipam.store.etcd import EtcdStore
from ipam.store.etcd.memory_kv import MemoryKV

WIDE = Pool("pods", parse_cidr("10.244.0.0/16"), 24)
NARROW = Pool("pods", parse_cidr("10.244.0.0/16"), 25)


def _overlaps(store: EtcdStore) -> list:
    state = store.snapshot().clusters["demo"]
    nets = [(x.node, ipaddress.ip_network(str(x.cidr))) for x in state.leases]
    return [(a, b) for a, b in itertools.combinations(nets, 2) if a[1].overlaps(b[1])]


@pytest.mark.parametrize("before, after", [(NARROW, WIDE), (WIDE, NARROW)])
def test_a_mask_change_cut_after_any_batch_leaves_no_overlap(before, after):
    """A node's new CIDR covers (or lies in) the one another node frees: the free lands
    first or with it. Six nodes, transactions of 5 operations: one node a batch."""
    nodes = [f"n{i}" for i in range(6)]
    batches = None
    for cut in itertools.count():
        kv = MemoryKV(max_txn_ops=5)
        store = EtcdStore("etcd://memory", StoreOptions(), kv=kv)
        store.update(allocate("demo", nodes, pool=before))
        written = kv.transactions
        kv.cut_after(cut)
        try:
            store.update(allocate("demo", nodes[::-1], keep_removed=False, pool=after))
            batches = batches or kv.transactions - written
        except StoreUnavailable:
            pass
        kv.cut_after(None)
        assert _overlaps(store) == [], f"cut after {cut} batches"
        if batches is not None:
            break
    assert batches > 3  # the run did take several transactions to cut between



def test_nodes_that_move_nothing_between_them_land_in_name_order():
    """Watchers see a revision's events in the order of its transaction's operations."""
    kv = MemoryKV()
    store = EtcdStore("etcd://memory", StoreOptions(), kv=kv)
    nodes = [f"n{i:02d}" for i in range(30)]
    events: list = []
    kv.watch("/netplan/demo/leases/", "/netplan/demo/leases0", 0, events.extend)
    store.update(allocate("demo", nodes[::-1], pool=WIDE))
    assert [e.key.decode().split("/")[4] for e in events] == nodes
