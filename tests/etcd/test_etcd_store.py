"""The etcd store's own features: its endpoint syntax, `check` on what it holds, TTL leases."""

from __future__ import annotations

import json
import time

import pytest
from etcd_support import stored_leases, write_spec
from netplan_cli import netplan
from store_support import take

from ipam.errors import InvalidInput, StoreError
from ipam.store import StoreOptions, open_store


@pytest.mark.parametrize("flags", [["--etcd-cert", "c.pem"], ["--etcd-key", "k.pem"],
                                   ["--etcd-user", "u"]])
def test_incomplete_credentials_are_input_errors(flags, tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    r = netplan("show", "--store", "etcd://127.0.0.1:1", *flags, env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: --etcd-"), r.stderr


def test_check_finds_orphans_overlaps_and_strays_in_etcd(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    assert netplan("check", "--store", etcd.url).returncode == 0
    with etcd.client() as client:
        for cluster, node, cidr in (("ghost", "g", "10.200.0.0/24"),  # no record
                                    ("demo", "intruder", "10.0.0.0/24"),  # a's CIDR
                                    ("demo", "stray", "172.31.0.0/24")):  # outside the pool
            client.put(f"/netplan/{cluster}/leases/pods-v4/{node}", json.dumps(
                {"cluster": cluster, "pool": "pods-v4", "node": node, "cidr": cidr}))
    r = netplan("check", "--store", etcd.url, "-o", "json")
    assert r.returncode == 1, r.stderr
    problems = json.loads(r.stdout)["problems"]
    assert {p["kind"] for p in problems} == {"orphan", "overlap", "out-of-pool"}, problems
    assert any("ghost" in p["message"] for p in problems if p["kind"] == "orphan")


def test_a_ttl_lease_lives_while_kept_alive_and_its_expiry_frees_the_cidrs(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a", "b"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    store = open_store(etcd.url, StoreOptions())
    with pytest.raises(InvalidInput):
        store.attach_ttl("demo", "nobody", ttl=2)
    with store.watch("demo") as watch:
        assert len(take(watch, 2)) == 2
        tie = store.attach_ttl("demo", "a", ttl=2)
        for _ in range(6):  # three seconds: longer than the TTL
            time.sleep(0.5)
            assert tie.keepalive() > 0
        assert {x["node"] for x in stored_leases(etcd, "demo")} == {"a", "b"}
        # The speaker stops: etcd deletes the node's lease, watchers see it go.
        (gone,) = take(watch, 1, timeout=20)
    assert (gone.kind, gone.lease.node, str(gone.lease.cidr)) == ("delete", "a", "10.0.0.0/24")
    with pytest.raises(StoreError, match="expired"):
        tie.keepalive()
    history = store.snapshot().clusters["demo"].history
    assert [(h.pool, str(h.cidr)) for h in history] == [("pods-v4", "10.0.0.0/24")]
    assert netplan("check", "--store", etcd.url).returncode == 0
    # The next allocate gives the node a never-used CIDR (the freed one is reused last) and
    # writes the expiry into the history for good.
    r = netplan("allocate", "-f", spec, "--store", etcd.url, "-o", "json")
    assert r.returncode == 0, r.stderr
    nodes = {n["name"]: n["podCIDRs"] for n in json.loads(r.stdout)["nodes"]}
    assert nodes == {"a": ["10.0.2.0/24"], "b": ["10.0.1.0/24"]}
    with etcd.client() as client:
        assert list(client.get_prefix("/netplan/demo/ttl/")) == []
        (value, _), = client.get_prefix("/netplan/demo/released/")
    # Stated by allocate's own read, at its revision: one later, for the lock it took.
    assert json.loads(value)["seq"] == history[0].seq + 1
    store.close()
