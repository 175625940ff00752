"""Leases that netplan before the node layout kept at `<cluster>/leases/<pool>/<node>`:
read where they stand, watched per node, and moved by the cluster's next write without a
consumer seeing them go. On the in-memory key-value layer."""

from __future__ import annotations

from store_support import POOL, allocate, release, summary, take

from ipam.store import StoreOptions
from ipam.store.etcd import EtcdStore
from ipam.store.etcd.kv import Delete, Put, prefix_end
from ipam.store.etcd.memory_kv import MemoryKV

LEASES = "/netplan/demo/leases/"


def _old_layout(kv: MemoryKV) -> None:
    """Every lease moved back to the key the old layout gave it."""
    for key, value in kv.keys(LEASES).items():
        node, pool = key[len(LEASES):].split("/")
        kv.txn([], [Put(f"{LEASES}{pool}/{node}", value), Delete(key)])


def test_old_keys_are_read_watched_per_node_and_moved_without_a_change_seen():
    kv = MemoryKV()
    store = EtcdStore("etcd://memory", StoreOptions(), kv=kv)
    store.update(allocate("demo", ["a", "b"]))
    before = store.snapshot().clusters["demo"].leases
    _old_layout(kv)
    assert sorted(kv.keys(LEASES)) == [f"{LEASES}{POOL.name}/a", f"{LEASES}{POOL.name}/b"]
    assert store.snapshot().clusters["demo"].leases == before
    with store.watch("demo", node="b") as watch:
        assert summary(take(watch, 1)) == [("put", "b", "10.244.1.0/24")]
        store.update(allocate("demo", ["a", "b", "c"]))  # moves a's and b's keys
        assert sorted(kv.keys(LEASES)) == [f"{LEASES}{n}/{POOL.name}" for n in "abc"]
        store.update(release("demo", {"b"}))
        store.update(allocate("demo", ["a", "b", "c"]))
        # The move itself is no change: the first events are the release and the new lease.
        assert summary(take(watch, 2)) == [("delete", "b", "10.244.1.0/24"),
                                           ("put", "b", "10.244.3.0/24")]


def test_a_node_at_todays_keys_is_watched_alone():
    kv = MemoryKV()
    store = EtcdStore("etcd://memory", StoreOptions(), kv=kv)
    store.update(allocate("demo", ["a", "b"]))
    watched = []
    original = kv.watch

    def spy(key, range_end, start_revision, callback):
        watched.append((key, range_end))
        return original(key, range_end, start_revision, callback)

    kv.watch = spy
    with store.watch("demo", node="b"):
        pass
    assert watched == [(f"{LEASES}b/", prefix_end(f"{LEASES}b/"))]
