"""The writers' lock: allocators that lost a race queue on an etcd key instead of racing."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest
from etcd_support import assert_no_overlap, stored_leases, write_spec
from netplan_cli import netplan, start

import ipam.store.etcd as etcd_store
from ipam.store import StoreOptions, open_store
from planner.plan import build_plan
from planner.spec import load_spec_file

LOCK = "/netplan/demo/lock"


def hold_lock(etcd, ttl: int):
    """Take the demo cluster's writers' lock as another writer would; its etcd lease id."""
    client = etcd.client()
    lease = client.lease(ttl)
    client.put(LOCK, "test", lease=lease)
    return client, lease


def allocate_in_thread(etcd, spec: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        with open_store(etcd.url, StoreOptions()) as store:
            parsed = load_spec_file(spec)
            store.update(lambda snap: ((p := build_plan(parsed, snap)).write(), p))
            outcome["done"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_writer_that_lost_a_race_plans_again_holding_the_lock(etcd, tmp_path):
    mine = load_spec_file(write_spec(tmp_path / "m.yaml", "demo", ["a", "b"]))
    theirs = load_spec_file(write_spec(tmp_path / "t.yaml", "demo", ["x"], offset=10))
    held = []
    with open_store(etcd.url, StoreOptions()) as store, \
            open_store(etcd.url, StoreOptions()) as other, etcd.client() as client:
        def plan(snapshot):
            held.append(client.get(LOCK)[0])
            if len(held) == 1:  # another writer lands between our read and our write
                other.update(lambda s: ((p := build_plan(theirs, s, True)).write(), p))
            p = build_plan(mine, snapshot, True)
            return p.write(), p

        store.update(plan)
        assert store.lost_races == 1
        assert held[0] is None and held[1] is not None and held[1].startswith(b"%d@" % os.getpid())
        assert client.get(LOCK)[0] is None
    assert sorted(x["node"] for x in stored_leases(etcd, "demo")) == ["a", "b", "x"]


def test_a_writer_waits_while_the_lock_is_held_and_goes_once_it_is_released(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    client, lease = hold_lock(etcd, ttl=60)
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b", "c"])
    thread, outcome = allocate_in_thread(etcd, spec)
    time.sleep(3.0)  # past LOCK_SAY: the writer now waits on its watch alone (up to 10 s)
    assert "done" not in outcome and len(stored_leases(etcd, "demo")) == 2
    released = time.monotonic()
    lease.revoke()
    thread.join(timeout=30)
    assert outcome["done"] - released < 2.0
    assert sorted(x["node"] for x in stored_leases(etcd, "demo")) == ["a", "b", "c"]
    assert client.get(LOCK)[0] is None  # the writer released the lock it took
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


def test_a_writer_goes_on_without_a_lock_it_waited_too_long_for(etcd, tmp_path, monkeypatch):
    monkeypatch.setattr(etcd_store, "LOCK_WAIT", 0.5)
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    client, lease = hold_lock(etcd, ttl=60)
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    thread, outcome = allocate_in_thread(etcd, spec)
    thread.join(timeout=30)
    # Written by compare-and-swap all the same; the lock is still the other writer's.
    assert "done" in outcome and len(stored_leases(etcd, "demo")) == 2
    assert client.get(LOCK)[0] == b"test"
    lease.revoke()
    client.close()


@pytest.mark.parametrize("writers", [6])
def test_racing_writers_queue_and_leave_no_lock_behind(etcd, tmp_path, writers):
    specs = [write_spec(tmp_path / f"w{w}.yaml", "demo",
                        [f"w{w}-node-{i:03d}" for i in range(300)], offset=w * 300)
             for w in range(writers)]
    procs = [start("allocate", "-f", s, "--store", etcd.url, "--keep-removed", "-o", "json")
             for s in specs]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    leases = stored_leases(etcd, "demo")
    assert len(leases) == writers * 300
    assert_no_overlap(leases)
    with etcd.client() as client:
        assert client.get(LOCK)[0] is None
    check = netplan("check", "--store", etcd.url)
    assert check.returncode == 0, check.stdout + check.stderr


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
