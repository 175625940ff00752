"""The writers' lock: allocators that lost a race queue on an etcd key instead of racing;
and the claims lock, on which writers of different clusters queue for their claims."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest
import yaml
from etcd_support import (
    assert_no_overlap,
    host_address,
    lock_holder,
    lock_queue,
    stored_leases,
    write_spec,
)
from netplan_cli import netplan, start

import ipam.store.etcd.lock as etcd_lock
import ipam.store.etcd.store as etcd_store
from ipam.store.etcd.grpc_kv import GrpcKV
from ipam.store import StoreOptions, open_store
from planner.plan import build_plan
from planner.release import release_write
from planner.spec import load_spec_file

LOCK = "/netplan/demo/lock"
CLAIMS = "/netplan/_lock"


def cluster_spec(path, cluster: str, index: int, nodes: int, first: int = 0) -> str:
    """A spec of a cluster with ranges of its own (the index-th /12 pool, /20 services):
    nodes `<cluster>-<first>`, ... """
    path.write_text(yaml.safe_dump({
        "cluster": cluster,
        "pools": [{"name": "pods-v4", "cidr": f"10.{16 * index}.0.0/12", "nodeMaskSize": 24}],
        "services": {"cidr": f"192.168.{16 * index}.0/20"},
        "bgp": {"topology": "none"},
        "nodes": [{"name": f"{cluster}-{i:03d}", "address": host_address(1000 * index + i)}
                  for i in range(first, first + nodes)],
    }))
    return str(path)


def hold_lock(etcd, ttl: int):
    """Take the demo cluster's writers' lock as another writer would: (client, its etcd
    lease)."""
    client = etcd.client()
    lease = client.lease(ttl)
    client.put(f"{LOCK}/{lease.id:x}", "test", lease=lease)
    return client, lease


def allocate_in_thread(etcd, spec: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            with open_store(etcd.url, StoreOptions()) as store:
                parsed = load_spec_file(spec)
                store.update(lambda snap: ((p := build_plan(parsed, snap)).write(), p),
                             cluster=parsed.cluster)
                outcome["done"] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - the test says what went wrong
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def allocate_behind_a_held_lock(etcd, tmp_path, before: list[str], after: list[str]):
    """Nodes `before` allocated, the lock held by another writer (an etcd lease of 60 s),
    and a writer of nodes `after` started: (raw client, the holder's lease, thread,
    outcome)."""
    spec = write_spec(tmp_path / "s.yaml", "demo", before)
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    client, lease = hold_lock(etcd, ttl=60)
    thread, outcome = allocate_in_thread(etcd, write_spec(tmp_path / "s.yaml", "demo", after))
    return client, lease, thread, outcome


def race(etcd, specs: list[str], clusters: list[str], *flags: str) -> list[dict]:
    """`netplan allocate` of every spec at once: the clusters' leases once all succeeded
    and `netplan check` finds the store sound."""
    procs = [start("allocate", "-f", s, "--store", etcd.url, *flags, "-o", "json")
             for s in specs]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    check = netplan("check", "--store", etcd.url)
    assert check.returncode == 0, check.stdout + check.stderr
    return [x for c in clusters for x in stored_leases(etcd, c)]


def test_a_writer_that_lost_a_race_plans_again_holding_the_lock(etcd, tmp_path):
    mine = load_spec_file(write_spec(tmp_path / "m.yaml", "demo", ["a", "b"]))
    theirs = load_spec_file(write_spec(tmp_path / "t.yaml", "demo", ["x"], offset=10))
    held = []
    with open_store(etcd.url, StoreOptions()) as store, \
            open_store(etcd.url, StoreOptions()) as other, etcd.client() as client:
        def plan(snapshot):
            held.append(lock_holder(client, LOCK))
            if len(held) == 1:  # another writer lands between our read and our write
                other.update(lambda s: ((p := build_plan(theirs, s, True)).write(), p))
            p = build_plan(mine, snapshot, True)
            return p.write(), p

        store.update(plan)
        assert store.lost_races == 1
        assert held[0] is None and held[1] is not None and held[1].startswith(b"%d@" % os.getpid())
        assert lock_holder(client, LOCK) is None
    assert sorted(x["node"] for x in stored_leases(etcd, "demo")) == ["a", "b", "x"]


def test_a_writer_waits_while_the_lock_is_held_and_goes_once_it_is_released(etcd, tmp_path):
    client, lease, thread, outcome = allocate_behind_a_held_lock(
        etcd, tmp_path, ["a", "b"], ["a", "b", "c"])
    time.sleep(3.0)  # past LOCK_SAY: the writer now waits on its watch alone
    assert "done" not in outcome and len(stored_leases(etcd, "demo")) == 2
    released = time.monotonic()
    lease.revoke()
    thread.join(timeout=30)
    assert outcome["done"] - released < 2.0
    assert sorted(x["node"] for x in stored_leases(etcd, "demo")) == ["a", "b", "c"]
    assert lock_holder(client, LOCK) is None  # the writer released the lock it took
    client.close()


def test_a_lock_whose_holder_died_lapses_with_its_etcd_lease(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    client, _ = hold_lock(etcd, ttl=2)  # never refreshed: as if its holder was killed
    began = time.monotonic()
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    r = netplan("allocate", "-f", spec, "--store", etcd.url)
    took = time.monotonic() - began
    assert r.returncode == 0, r.stderr
    assert 1.0 < took < 10, took  # etcd expires leases on its own clock, within a second or so
    assert len(stored_leases(etcd, "demo")) == 2
    client.close()


def test_a_writer_goes_on_without_a_lock_it_waited_too_long_for(etcd, tmp_path, monkeypatch,
                                                                caplog):
    monkeypatch.setattr(etcd_lock, "LOCK_WAIT", 0.5)
    client, lease, thread, outcome = allocate_behind_a_held_lock(
        etcd, tmp_path, ["a"], ["a", "b"])
    thread.join(timeout=30)
    # Written by compare-and-swap all the same; the lock is still the other writer's.
    assert "done" in outcome and len(stored_leases(etcd, "demo")) == 2
    assert lock_holder(client, LOCK) == b"test"
    # Once: its read finds the lock held, but a lock waited out is not waited for again.
    assert [r.getMessage() for r in caplog.records if "waited" in r.getMessage()] == [
        "/netplan/demo/lock: waited 0.5s; writing without the lock"]
    lease.revoke()
    client.close()


@pytest.mark.parametrize("writers", [6])
def test_racing_writers_queue_and_leave_no_lock_behind(etcd, tmp_path, writers):
    specs = [write_spec(tmp_path / f"w{w}.yaml", "demo",
                        [f"w{w}-node-{i:03d}" for i in range(300)], offset=w * 300)
             for w in range(writers)]
    leases = race(etcd, specs, ["demo"], "--keep-removed")
    assert len(leases) == writers * 300
    assert_no_overlap(leases)
    with etcd.client() as client:
        assert lock_holder(client, LOCK) is None


def test_a_long_wait_for_the_lock_is_said_on_stderr(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    client, lease = hold_lock(etcd, ttl=60)
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    proc = start("allocate", "-f", spec, "--store", etcd.url)
    said = []
    deadline = time.monotonic() + 30
    while not said and select.select([proc.stderr], [], [], deadline - time.monotonic())[0]:
        line = proc.stderr.readline()
        if not line:
            break
        said += [line.rstrip("\n")] if "lock" in line else []
    assert said == ["/netplan/demo/lock: waiting for the writer that holds it (test)"]
    assert proc.poll() is None  # still waiting
    lease.revoke()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    client.close()


def test_a_claim_lost_to_another_cluster_is_made_again_holding_the_claims_lock(etcd, tmp_path):
    """Held for the claiming batches only: the lease batches go without it."""
    mine = load_spec_file(cluster_spec(tmp_path / "m.yaml", "demo", 0, 300))
    theirs = load_spec_file(cluster_spec(tmp_path / "t.yaml", "other", 1, 3))
    reads, writes = [], []
    with open_store(etcd.url, StoreOptions()) as store, \
            open_store(etcd.url, StoreOptions()) as other, etcd.client() as client:
        def plan(snapshot):
            reads.append((lock_holder(client, CLAIMS), lock_holder(client, LOCK)))
            if len(reads) == 1:  # another cluster claims its ranges between our read and write
                other.update(lambda s: ((p := build_plan(theirs, s)).write(), p))
            p = build_plan(mine, snapshot)
            return p.write(), p

        txn = store.kv.txn

        def spy(compare, success, failure=()):
            if compare and compare[0].target == "mod":  # a batch (a lock's compares versions)
                writes.append(lock_holder(client, CLAIMS) is not None)
            return txn(compare, success, failure)

        store.kv.txn = spy
        store.update(plan)
        assert store.lost_races == 1
        assert reads[0] == (None, None)
        assert reads[1][0].startswith(b"%d@" % os.getpid()) and reads[1][1] is None
        # the lost batch; again under the lock, the record, node pages and the first leases;
        # then the rest of the 300 leases (125 operations a batch) without it
        assert writes == [False, True, False, False], writes
        assert lock_holder(client, CLAIMS) is None
    assert len(stored_leases(etcd, "demo")) == 300 and len(stored_leases(etcd, "other")) == 3


@pytest.mark.parametrize("clusters", [6])
def test_racing_clusters_queue_their_claims_and_leave_no_lock_behind(etcd, tmp_path,
                                                                     clusters):
    specs = [cluster_spec(tmp_path / f"c{c}.yaml", f"c{c}", c, 200) for c in range(clusters)]
    leases = race(etcd, specs, [f"c{c}" for c in range(clusters)])
    assert len(leases) == clusters * 200
    assert_no_overlap(leases)
    with etcd.client() as client:
        assert lock_holder(client, CLAIMS) is None


def test_a_writer_lets_the_claims_lock_go_before_it_waits_for_its_clusters(etcd, tmp_path):
    """Else it could wait for a writer of its cluster that waits for the claims lock."""
    mine = load_spec_file(cluster_spec(tmp_path / "m.yaml", "demo", 0, 3))
    theirs = load_spec_file(cluster_spec(tmp_path / "t.yaml", "other", 1, 3))
    same = load_spec_file(cluster_spec(tmp_path / "s.yaml", "demo", 0, 1, first=100))
    reads = []
    with open_store(etcd.url, StoreOptions()) as store, \
            open_store(etcd.url, StoreOptions()) as other, etcd.client() as client:
        def plan(snapshot):
            reads.append((lock_holder(client, CLAIMS), lock_holder(client, LOCK)))
            if len(reads) == 1:  # another cluster claims: we take the claims lock
                other.update(lambda s: ((p := build_plan(theirs, s)).write(), p))
            elif len(reads) == 2:  # a writer of our cluster lands: we need its lock
                other.update(lambda s: ((p := build_plan(same, s, True)).write(), p))
            p = build_plan(mine, snapshot, True)
            return p.write(), p

        store.update(plan)
        assert store.lost_races == 2
        ours = b"%d@" % os.getpid()
        assert reads[1][0].startswith(ours) and reads[1][1] is None
        assert reads[2][0] is None and reads[2][1].startswith(ours)
        assert lock_holder(client, CLAIMS) is None and lock_holder(client, LOCK) is None
    assert sorted(x["node"] for x in stored_leases(etcd, "demo")) == [
        "demo-000", "demo-001", "demo-002", "demo-100"]


def test_a_writer_keeps_its_etcd_lease_alive_while_it_waits_for_the_lock(etcd, tmp_path,
                                                                         monkeypatch):
    """Its lock key is created with that lease: one expired while waiting is refused."""
    monkeypatch.setattr(etcd_lock, "LOCK_TTL", 2)
    client, lease, thread, outcome = allocate_behind_a_held_lock(
        etcd, tmp_path, ["a"], ["a", "b"])
    time.sleep(5.0)  # more than twice the writer's lease
    lease.revoke()
    thread.join(timeout=30)
    assert "done" in outcome, outcome
    assert sorted(x["node"] for x in stored_leases(etcd, "demo")) == ["a", "b"]
    client.close()


def test_allocate_takes_the_lock_as_it_reads_and_lets_it_go_with_its_last_batch(etcd,
                                                                                 tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", [f"n{i:03d}" for i in range(300)])
    r = netplan("allocate", "-f", spec, "--store", etcd.url)
    assert r.returncode == 0, r.stderr
    with etcd.client() as client:
        first = client.get("/netplan/demo/record")[1].mod_revision  # the first batch
        last = client.get("/netplan/demo/guard")[1].mod_revision  # the third and last
        assert last == first + 2
        # Taken (and the store read) by the transaction just before the first batch.
        ((held, meta),) = lock_queue(client, LOCK, revision=first - 1)
        assert meta.create_revision == first - 1
        assert lock_holder(client, LOCK, revision=last - 1) == held
        assert lock_holder(client, LOCK, revision=last) is None


def test_writers_queue_each_behind_the_one_before_and_go_when_none_is_left(etcd, tmp_path):
    """Ours waits for the key created just before its own; when that one lapses (its
    writer died) with another still ahead, it waits for that one."""
    client, first = hold_lock(etcd, ttl=60)
    second = client.lease(60)
    client.put(f"{LOCK}/{second.id:x}", "second", lease=second)
    thread, outcome = allocate_in_thread(etcd, write_spec(tmp_path / "s.yaml", "demo", ["a"]))
    deadline = time.monotonic() + 10
    while len(lock_queue(client, LOCK)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [value for value, _ in lock_queue(client, LOCK)][:2] == [b"test", b"second"]
    second.revoke()
    time.sleep(1.0)
    assert "done" not in outcome and lock_holder(client, LOCK) == b"test"
    first.revoke()
    thread.join(timeout=30)
    assert "done" in outcome, outcome
    assert lock_queue(client, LOCK) == []
    client.close()


@pytest.mark.parametrize("gone", ["released", "taken by another"])
def test_a_waiter_sees_a_change_made_before_its_watch_began(etcd, gone):
    """Its watch starts from now (one from the past waits for etcd's next sync of such
    watches, every 100 ms), so no event comes of such a change: it reads the key again once
    the watch is in place. Without that read, this waits out the timeout."""
    with etcd.client() as client:
        lease = client.lease(60)
        client.put(LOCK, "holder", lease=lease)
        held = client.get(LOCK)[1].mod_revision
        lease.revoke()
        if gone == "taken by another":
            client.put(LOCK, "next", lease=client.lease(60))
        kv = GrpcKV([("127.0.0.1", etcd.members[0].client_port)], timeout=5)
        began = time.monotonic()
        etcd_lock._changed(kv, LOCK, held, timeout=30)
        kv.close()
        assert time.monotonic() - began < 5  # not the timeout


def test_forgetting_a_cluster_leaves_the_writers_queued_behind(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    with open_store(etcd.url, StoreOptions()) as store, etcd.client() as client:
        lease = client.lease(60)

        def plan(snapshot):
            if not lock_queue(client, LOCK)[1:]:  # another writer queues behind us
                client.put(f"{LOCK}/{lease.id:x}", "next", lease=lease)
            return release_write(snapshot, "demo", [], True)

        store.update(plan, cluster="demo")
        assert [value for value, _ in lock_queue(client, LOCK)] == [b"next"]
        assert list(client.get_prefix("/netplan/demo/leases/")) == []
        assert "demo" not in store.snapshot().clusters
        lease.revoke()


def test_a_writer_holding_the_lock_goes_again_at_once_after_a_lost_race(etcd, tmp_path,
                                                                        monkeypatch):
    """Its rival does not queue: pausing would only keep the writers behind it waiting."""
    pauses: list[float] = []
    monkeypatch.setattr(etcd_store.time, "sleep", pauses.append)
    spec = load_spec_file(write_spec(tmp_path / "s.yaml", "demo", ["a"]))
    with open_store(etcd.url, StoreOptions()) as store, etcd.client() as client:
        def plan(snapshot):
            if not pauses and store.lost_races == 0:
                client.put("/netplan/demo/guard", "")  # a writer that did not queue
            p = build_plan(spec, snapshot)
            return p.write(), p

        store.update(plan, cluster="demo")
        assert store.lost_races == 1 and pauses == []
    assert [x["node"] for x in stored_leases(etcd, "demo")] == ["a"]
