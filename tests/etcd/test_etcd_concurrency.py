"""Many `netplan allocate` processes on one etcd at once."""

from __future__ import annotations

import ipaddress
import json
import time

from etcd_support import (
    V4_POOL,
    assert_no_overlap,
    lowest,
    stored_leases,
    write_spec,
)
from netplan_cli import netplan, start


def test_eight_allocators_of_a_thousand_nodes_each(etcd, tmp_path):
    writers, per_writer = 8, 1000
    specs = [
        write_spec(tmp_path / f"w{w}.yaml", "big",
                   [f"w{w}-node-{i:04d}" for i in range(per_writer)], offset=w * per_writer)
        for w in range(writers)
    ]
    began = time.monotonic()
    # Each writer keeps the others' nodes, so the store must end up with all of them.
    procs = [start("allocate", "-f", s, "--store", etcd.url, "--keep-removed", "-o", "json")
             for s in specs]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    elapsed = time.monotonic() - began
    print(f"\n{writers} allocators x {per_writer} nodes on etcd: {elapsed:.1f}s")
    for _, err, code in results:
        assert code == 0, err
    leases = stored_leases(etcd, "big")
    assert sorted(x["node"] for x in leases) == sorted(
        f"w{w}-node-{i:04d}" for w in range(writers) for i in range(per_writer))
    assert_no_overlap(leases)
    nets = sorted(ipaddress.ip_network(x["cidr"]) for x in leases)
    # Fresh CIDRs first, none twice: the 8,000 leases are exactly the 8,000 lowest /24s.
    assert nets == lowest(V4_POOL, 24, writers * per_writer)
    shown = json.loads(netplan("show", "--cluster", "big", "--store", etcd.url,
                               "-o", "json").stdout)
    (pool,) = shown["pools"]
    assert (pool["capacity"], pool["allocated"]) == (65536, writers * per_writer)
    check = netplan("check", "--store", etcd.url)
    assert check.returncode == 0, check.stdout + check.stderr


def test_two_clusters_racing_for_one_pool_exactly_one_wins(etcd, tmp_path):
    for round_ in range(3):
        pool = f"10.{100 + round_}.0.0/16"
        procs = []
        for name, hosts, net in (("alpha", "172.17", "a"), ("beta", "172.18", "b")):
            spec = tmp_path / f"{name}.yaml"
            spec.write_text(json.dumps({
                "cluster": f"{name}-{round_}",
                "pools": [{"name": "pods-v4", "cidr": pool, "nodeMaskSize": 24}],
                # Each cluster its own services range: the pool is all they fight over.
                "services": {"cidr": f"fd00:{net}:{round_}::/108"},
                "nodes": [{"name": "n0", "address": f"{hosts}.0.{round_ + 1}"}],
            }))
            procs.append(start("allocate", "-f", str(spec), "--store", etcd.url))
        codes = sorted(p.wait(timeout=120) for p in procs)
        assert codes == [0, 1], [p.stderr.read() for p in procs]
        loser = next(p for p in procs if p.returncode == 1)
        message = loser.stderr.read()
        assert message.startswith("error:") and pool in message
    shown = json.loads(netplan("show", "--store", etcd.url, "-o", "json").stdout)
    assert len(shown["clusters"]) == 3
    assert netplan("check", "--store", etcd.url).returncode == 0
