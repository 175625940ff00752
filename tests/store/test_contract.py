"""The Store contract, run unchanged against every back end (memory, sqlite, etcd)."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import threading

import pytest
from store_support import allocate, cidrs, forget, record, release, summary, take

from ipam.net import parse_address, parse_cidr
from ipam.pool import Pool

# --- snapshot and update ---------------------------------------------------------------------


def test_an_empty_store_has_no_clusters(store):
    snapshot = store.snapshot()
    assert dict(snapshot.clusters) == {}
    assert snapshot.next_seq >= 1


def test_update_applies_the_write_and_returns_the_plans_result(store):
    alloc = store.update(allocate("demo", ["a", "b", "c"]))
    assert [c.action for c in alloc.changes] == ["allocate"] * 3
    snapshot = store.snapshot()
    assert snapshot.clusters["demo"].record == record("demo")
    assert cidrs(snapshot, "demo") == {"a": "10.244.0.0/24", "b": "10.244.1.0/24",
                                       "c": "10.244.2.0/24"}


def test_a_plan_without_a_write_writes_nothing_and_still_returns(store):
    store.update(allocate("demo", ["a"]))
    before = store.snapshot()
    assert store.update(lambda snapshot: (None, "nothing")) == "nothing"
    assert store.snapshot().clusters == before.clusters


def test_a_plan_that_raises_writes_nothing(store):
    store.update(allocate("demo", ["a"]))
    before = store.snapshot()

    def failing(snapshot):
        allocate("demo", ["a", "b"])(snapshot)
        raise RuntimeError("planning failed")

    with pytest.raises(RuntimeError, match="planning failed"):
        store.update(failing)
    assert store.snapshot().clusters == before.clusters


def _with_nodes(cluster: str, nodes: list[tuple[str, list[str], str | None]],
                hosts_order=None, kept=()):
    """allocate() with a record naming each node's addresses and router id, in this order
    (or hosts in hosts_order, a list of (node, address)), and the nodes kept."""
    rec = dataclasses.replace(
        record(cluster),
        hosts=tuple((n, parse_address(a)) for n, a in hosts_order) if hosts_order else
        tuple((n, parse_address(a)) for n, addrs, _ in nodes for a in addrs),
        router_ids=tuple((n, parse_address(r)) for n, _, r in nodes if r is not None),
        kept=tuple(kept))
    plan = allocate(cluster, [n for n, _, _ in nodes])

    def run(snapshot):
        write, alloc = plan(snapshot)
        return dataclasses.replace(write, record=rec), rec

    return run


def test_a_records_hosts_and_router_ids_come_back_exactly(store):
    # Not sorted by name, two addresses for one node, a node without a router id.
    nodes = [("zeta", ["192.0.2.9", "2001:db8::9"], "192.0.2.9"),
             ("alpha", ["192.0.2.1"], "192.0.2.1"),
             ("mid", ["192.0.2.5"], None)]
    for step in (nodes, nodes[1:] + nodes[:1], [nodes[2], ("new", ["192.0.2.7"], "10.1.1.1")]):
        written = store.update(_with_nodes("demo", step))
        assert store.snapshot().clusters["demo"].record == written
        assert store.update(_with_nodes("demo", step)) == store.snapshot().clusters[
            "demo"].record
    # A record whose hosts interleave nodes is kept as it is as well.
    odd = [("a", "192.0.2.1"), ("b", "192.0.2.2"), ("a", "2001:db8::1")]
    written = store.update(_with_nodes("demo", [("a", [], "192.0.2.1"), ("b", [], None)],
                                       hosts_order=odd))
    assert store.snapshot().clusters["demo"].record == written
    written = store.update(_with_nodes("demo", nodes))
    assert store.snapshot().clusters["demo"].record == written
    # Kept nodes (out of the spec, their leases kept; by name after the spec's nodes, as
    # the planner lists them), one of them without addresses (from an interrupted run).
    written = store.update(_with_nodes("demo", nodes, kept=["alpha", "ghost", "mid"]))
    assert store.snapshot().clusters["demo"].record == written


def test_a_large_write_lands_whole(store):
    # More than one etcd transaction holds: the etcd store writes it in batches.
    wide = Pool("pods", parse_cidr("10.0.0.0/8"), 24)
    nodes = [f"node-{i:04d}" for i in range(600)]
    store.update(allocate("big", nodes, pool=wide))
    leases = store.snapshot().clusters["big"].leases
    assert sorted(x.node for x in leases) == nodes
    assert sorted(x.cidr for x in leases) == [wide.cidr_at(i) for i in range(600)]


def test_allocation_is_sticky_and_releases_are_reused_last(store):
    store.update(allocate("demo", ["a", "b", "c"]))
    store.update(allocate("demo", ["a", "c"], keep_removed=False))  # b's CIDR is freed
    store.update(allocate("demo", ["a", "c", "d"]))
    assert cidrs(store.snapshot(), "demo") == {"a": "10.244.0.0/24", "c": "10.244.2.0/24",
                                               "d": "10.244.3.0/24"}


def test_a_node_moved_to_another_cidr_in_one_write(store):
    store.update(allocate("demo", ["a", "b"]))
    with store.watch("demo", store.snapshot().revision + 1) as watch:
        store.update(allocate("demo", ["a", "b"], pins={"a": "10.244.7.0/24"}))
        events = take(watch, 2)
    assert cidrs(store.snapshot(), "demo") == {"a": "10.244.7.0/24", "b": "10.244.1.0/24"}
    assert summary(events) == [("delete", "a", "10.244.0.0/24"), ("put", "a", "10.244.7.0/24")]
    assert [str(h.cidr) for h in store.snapshot().clusters["demo"].history] == ["10.244.0.0/24"]


def test_a_cidr_freed_and_handed_out_again_in_one_write(store):
    tiny = Pool("pods", parse_cidr("10.9.0.0/30"), 32)  # four CIDRs
    store.update(allocate("demo", ["a", "b", "c", "d"], pool=tiny))
    with store.watch("demo", store.snapshot().revision + 1) as watch:
        store.update(allocate("demo", ["a", "b", "c", "e"], keep_removed=False, pool=tiny))
        events = take(watch, 2)
    assert cidrs(store.snapshot(), "demo")["e"] == "10.9.0.3/32"
    # Never held twice, not even for a moment: the delete comes first.
    assert summary(events) == [("delete", "d", "10.9.0.3/32"), ("put", "e", "10.9.0.3/32")]


def test_history_and_next_seq_are_monotonic(store):
    store.update(allocate("demo", ["a", "b", "c"]))
    seqs = []
    for node in ("a", "b", "c"):
        before = store.snapshot().next_seq
        store.update(release("demo", {node}))
        snapshot = store.snapshot()
        (entry,) = [h for h in snapshot.clusters["demo"].history if h.seq not in seqs]
        assert entry.seq == before and snapshot.next_seq > entry.seq
        seqs.append(entry.seq)
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    history = store.snapshot().clusters["demo"].history
    assert sorted(str(h.cidr) for h in history) == ["10.244.0.0/24", "10.244.1.0/24",
                                                   "10.244.2.0/24"]


def test_forgetting_a_cluster_drops_its_record_leases_and_history(store):
    store.update(allocate("one", ["a", "b"]))
    store.update(release("one", {"a"}))
    other = Pool("pods", parse_cidr("10.245.0.0/16"), 24)
    store.update(allocate("two", ["x"], pool=other))
    store.update(forget("one"))
    snapshot = store.snapshot()
    assert list(snapshot.clusters) == ["two"]
    assert cidrs(snapshot, "two") == {"x": "10.245.0.0/24"}
    # A cluster of the same name starts afresh: no history, the lowest CIDRs again.
    store.update(allocate("one", ["c"]))
    snapshot = store.snapshot()
    assert cidrs(snapshot, "one") == {"c": "10.244.0.0/24"}
    assert snapshot.clusters["one"].history == ()


def test_another_handle_sees_what_one_wrote(open_test_store):
    first, second = open_test_store(), open_test_store()
    first.update(allocate("demo", ["a"]))
    assert cidrs(second.snapshot(), "demo") == {"a": "10.244.0.0/24"}


def test_concurrent_updates_never_hand_out_a_cidr_twice(open_test_store):
    store = open_test_store()
    writers, per_writer = 6, 15
    errors = []

    def run(w: int) -> None:
        try:
            for i in range(per_writer):  # one node per run: many small racing writes
                store.update(allocate("demo", [f"w{w}-{i:02d}"]))
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    leases = store.snapshot().clusters["demo"].leases
    assert len(leases) == writers * per_writer
    nets = sorted(ipaddress.ip_network(str(x.cidr)) for x in leases)
    assert all(not a.overlaps(b) for a, b in itertools.pairwise(nets))
    assert nets == list(ipaddress.ip_network("10.244.0.0/16").subnets(new_prefix=24))[
        : writers * per_writer]


# --- watch -----------------------------------------------------------------------------------


def test_a_watch_first_lists_the_leases_then_follows_every_change_in_order(store):
    store.update(allocate("demo", ["a", "b"]))
    other = Pool("pods", parse_cidr("10.245.0.0/16"), 24)
    with store.watch("demo") as watch:
        listed = take(watch, 2)
        assert summary(listed) == [("put", "a", "10.244.0.0/24"), ("put", "b", "10.244.1.0/24")]
        assert listed[0].revision == listed[1].revision
        store.update(allocate("other", ["x"], pool=other))  # another cluster: not seen
        store.update(allocate("demo", ["a", "b", "c"]))
        store.update(release("demo", {"a"}))
        store.update(allocate("demo", ["b", "c", "d"], keep_removed=False))
        store.update(forget("demo"))
        events = take(watch, 6)
    assert summary(events) == [
        ("put", "c", "10.244.2.0/24"),
        ("delete", "a", "10.244.0.0/24"),
        ("put", "d", "10.244.3.0/24"),
        ("delete", "b", "10.244.1.0/24"),
        ("delete", "c", "10.244.2.0/24"),
        ("delete", "d", "10.244.3.0/24"),
    ]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and revisions[0] > listed[0].revision
    assert not any(e.resync for e in listed + events)


def test_a_watch_from_a_snapshot_revision_sees_exactly_the_later_changes(store):
    store.update(allocate("demo", ["a"]))
    start = store.snapshot().revision + 1
    store.update(allocate("demo", ["a", "b"]))
    store.update(release("demo", {"a"}))
    with store.watch("demo", start) as watch:
        events = take(watch, 2)
    assert summary(events) == [("put", "b", "10.244.1.0/24"), ("delete", "a", "10.244.0.0/24")]


def test_a_watch_of_one_node_sees_that_nodes_changes_alone(store):
    """A speaker follows its own leases: other nodes' changes never reach it."""
    store.update(allocate("demo", ["a", "b"]))
    with store.watch("demo", node="b") as watch:
        assert summary(take(watch, 1)) == [("put", "b", "10.244.1.0/24")]
        store.update(allocate("demo", ["a", "b", "c", "d"]))
        store.update(release("demo", {"a", "b"}))
        store.update(allocate("demo", ["b"]))
        events = take(watch, 2)
    assert summary(events) == [("delete", "b", "10.244.1.0/24"), ("put", "b", "10.244.4.0/24")]
    start = store.snapshot().revision + 1
    store.update(release("demo", {"c", "b"}))
    with store.watch("demo", start, node="c") as watch:
        assert summary(take(watch, 1)) == [("delete", "c", "10.244.2.0/24")]


def test_a_watch_resumed_from_its_last_revision_misses_nothing(store):
    store.update(allocate("demo", ["a"]))
    with store.watch("demo") as watch:
        (first,) = take(watch, 1)
    held = {first.lease}
    for i in range(20):  # changes made while nobody watches
        store.update(allocate("demo", ["a", f"n{i:02d}"]))
    with store.watch("demo", first.revision + 1, known=held) as watch:
        events = take(watch, 20)
    assert [e.lease.node for e in events] == [f"n{i:02d}" for i in range(20)]
    assert [e.kind for e in events] == ["put"] * 20


def test_close_ends_a_blocked_watch(store):
    store.update(allocate("demo", ["a"]))
    watch = store.watch("demo")
    take(watch, 1)
    ended = threading.Event()

    def run():
        for _ in watch:
            pass
        ended.set()

    threading.Thread(target=run, daemon=True).start()
    watch.close()
    assert ended.wait(10)
