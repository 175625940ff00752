"""The etcd watch: resumed after a lost connection, and after compaction."""

from __future__ import annotations

import logging

import pytest
from store_support import allocate, release, summary, take

from ipam.errors import StoreUnavailable
from ipam.net import parse_cidr
from ipam.pool import Pool
from ipam.store import StoreOptions, open_store

WIDE = Pool("pods", parse_cidr("10.0.0.0/8"), 24)


def test_a_thousand_changes_made_while_the_watcher_is_cut_off_all_arrive_in_order(etcd3):
    first, *others = etcd3.members
    writer = open_store("etcd://" + ",".join(m.endpoint for m in others), StoreOptions())
    watcher = open_store(etcd3.url, StoreOptions())  # talks to the first member
    nodes = [f"node-{i:04d}" for i in range(510)]
    writer.update(allocate("demo", nodes[:10], pool=WIDE))
    with watcher.watch("demo") as watch:
        assert len(take(watch, 10)) == 10
        etcd3.kill(first)  # the watcher's member: its stream breaks while nobody reads
        expected = []
        for end in range(60, 511, 50):  # 500 nodes come, 50 at a time ...
            alloc = writer.update(allocate("demo", nodes[:end], pool=WIDE))
            expected += [("put", c.node, str(c.cidr)) for c in alloc.changes
                         if c.action == "allocate"]
        for start in range(0, 500, 100):  # ... then 500 go, 100 at a time
            freed = writer.update(release("demo", set(nodes[start:start + 100])))
            expected += [("delete", x.node, str(x.cidr)) for x in freed]
        assert len(expected) == 1000
        events = take(watch, 1000, timeout=60)
    assert summary(events) == expected
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions)
    assert not any(e.resync for e in events)
    writer.close()
    watcher.close()


def test_a_watch_resumed_past_compaction_resyncs_from_a_snapshot(etcd, caplog):
    store = open_store(etcd.url, StoreOptions())
    store.update(allocate("demo", ["a", "b"]))
    with store.watch("demo") as watch:
        held = take(watch, 2)
    store.update(release("demo", {"a"}))
    store.update(allocate("demo", ["b", "c"]))
    with etcd.client() as client:
        client.compact(store.snapshot().revision, physical=True)
    caplog.set_level(logging.WARNING, logger="ipam.store.etcd")
    with store.watch("demo", held[-1].revision + 1, known=[e.lease for e in held]) as watch:
        events = take(watch, 2)
        store.update(allocate("demo", ["b", "c", "d"]))
        (after,) = take(watch, 1)
    assert summary(events) == [("delete", "a", "10.244.0.0/24"), ("put", "c", "10.244.2.0/24")]
    assert all(e.resync for e in events)
    assert "compacted" in caplog.text and "resynced" in caplog.text
    assert summary([after]) == [("put", "d", "10.244.3.0/24")] and not after.resync
    store.close()


def test_a_watch_whose_store_stays_down_ends_and_its_caller_resumes(etcd):
    store = open_store(etcd.url, StoreOptions(timeout=1))
    store.update(allocate("demo", ["a"]))
    watch = store.watch("demo")
    (listed,) = take(watch, 1)
    (member,) = etcd.members
    etcd.kill(member)
    with pytest.raises(StoreUnavailable, match="no endpoint answered"):
        next(watch)
    with pytest.raises(StopIteration):
        next(watch)
    etcd.start_member(member)
    etcd.wait_healthy()
    store.update(allocate("demo", ["a", "b"]))
    with store.watch("demo", listed.revision, known=[listed.lease]) as resumed:
        events = take(resumed, 1)
    assert summary(events) == [("put", "b", "10.244.1.0/24")]
    store.close()


def test_closing_the_store_ends_its_watches(etcd):
    store = open_store(etcd.url, StoreOptions())
    store.update(allocate("demo", ["a"]))
    watch = store.watch("demo")
    take(watch, 1)
    store.close()
    with pytest.raises(StopIteration):
        next(watch)
