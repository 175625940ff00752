"""Several `netplan allocate` processes on one SQLite file at once."""

from __future__ import annotations

import ipaddress
import json
import sqlite3

import yaml

from netplan_cli import netplan, start


def spec(path, cluster, nodes, pool="10.244.0.0/16", hosts="10.0", services="10.96.0.0/12"):
    path.write_text(yaml.safe_dump({
        "cluster": cluster,
        "pools": [{"name": "pods-v4", "cidr": pool, "nodeMaskSize": 24}],
        "services": {"cidr": services},
        "nodes": [{"name": n, "address": f"{hosts}.{i // 250}.{i % 250 + 1}"}
                  for i, n in nodes],
    }))
    return str(path)


def test_concurrent_allocators_never_hand_out_a_cidr_twice(tmp_path):
    db = str(tmp_path / "netplan.db")
    writers = 4
    per_writer = 60
    specs = [
        spec(tmp_path / f"w{w}.yaml", "shared",
             [(w * per_writer + i, f"w{w}-node-{i:03d}") for i in range(per_writer)])
        for w in range(writers)
    ]
    # Each writer keeps the others' nodes, so the store must end up with all of them.
    procs = [start("allocate", "-f", s, "--store", db, "--keep-removed", "-o", "json")
             for s in specs]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for _, err, code in results:
        assert code == 0, err
    rows = sqlite3.connect(db).execute("SELECT node, cidr FROM leases").fetchall()
    assert len(rows) == writers * per_writer
    nets = sorted(ipaddress.ip_network(c) for _, c in rows)
    for a, b in zip(nets, nets[1:]):
        assert not a.overlaps(b), (a, b)
    pool = ipaddress.ip_network("10.244.0.0/16")
    assert all(n.subnet_of(pool) and n.prefixlen == 24 for n in nets)
    # Fresh CIDRs first: the 240 leases are exactly the 240 lowest /24s.
    assert nets == list(pool.subnets(new_prefix=24))[: writers * per_writer]
    assert netplan("check", "--store", db).returncode == 0


def test_two_clusters_racing_for_one_pool_exactly_one_wins(tmp_path):
    db = str(tmp_path / "netplan.db")
    for round_ in range(3):
        pool = f"10.{100 + round_}.0.0/16"
        # Each cluster its own services range: the pool is the only thing they fight over.
        a = spec(tmp_path / "a.yaml", f"alpha-{round_}", [(0, "a-0")], pool=pool, hosts="10.1",
                 services=f"fd00:a:{round_}::/108")
        b = spec(tmp_path / "b.yaml", f"beta-{round_}", [(0, "b-0")], pool=pool, hosts="10.2",
                 services=f"fd00:b:{round_}::/108")
        procs = [start("allocate", "-f", s, "--store", db) for s in (a, b)]
        codes = sorted(p.wait(timeout=120) for p in procs)
        assert codes == [0, 1], [p.stderr.read() for p in procs]
        loser = [p for p in procs if p.returncode == 1][0]
        message = loser.stderr.read()
        assert message.startswith("error:") and pool in message
    shown = json.loads(netplan("show", "--store", db, "-o", "json").stdout)
    assert len(shown["clusters"]) == 3
