"""The record's layout in etcd: small record key, nodes in pages; a cluster of tens of
thousands of nodes on an etcd with its default limits (1.5 MiB request, 4 MiB reply)."""

from __future__ import annotations

import ipaddress
import json
import time
import zlib
from pathlib import Path

import yaml
from pyetcd.utils import prefix_range_end
from etcd_support import write_spec
from netplan_cli import netplan

from ipam.store import StoreOptions, open_store
from ipam.store.codec import record_to_json


def _keys(etcd, prefix: str, limit: int = 1000) -> dict[str, bytes]:
    """Every key under prefix, read in pages (one reply of all would pass gRPC's 4 MiB)."""
    start, end = prefix.encode(), prefix_range_end(prefix.encode())
    keys: dict[str, bytes] = {}
    with etcd.client() as client:
        while True:
            resp = client.get_range_response(start, end, limit=limit)
            keys.update((kv.key.decode(), kv.value) for kv in resp.kvs)
            if not resp.more:
                return keys
            start = resp.kvs[-1].key + b"\0"


def _pages(etcd, cluster: str) -> dict[str, dict]:
    return {k.rsplit("/", 1)[1]: json.loads(v)
            for k, v in _keys(etcd, f"/netplan/{cluster}/nodes/").items()}


def test_node_pages_follow_the_spec_and_leave_with_their_nodes(etcd, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", "demo", ["b", "a", "c"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    record = json.loads(_keys(etcd, "/netplan/demo/record")["/netplan/demo/record"])
    assert record["hosts"] == [] and record["routerIds"] == []
    # Three nodes, no page boundary among b and c (their CRC-32s are not 0 modulo 64):
    # one page, named after its first node in name order.
    assert all(zlib.crc32(n.encode()) % 64 for n in "bc")
    assert _pages(etcd, "demo") == {"a": {
        "b": {"addresses": ["172.16.0.1"], "index": 0, "routerId": "172.16.0.1"},
        "a": {"addresses": ["172.16.0.2"], "index": 1, "routerId": "172.16.0.2"},
        "c": {"addresses": ["172.16.0.3"], "index": 2, "routerId": "172.16.0.3"},
    }}
    r = netplan("show", "--store", etcd.url, "--cluster", "demo", "-o", "json")
    assert [n["name"] for n in json.loads(r.stdout)["nodes"]] == ["b", "a", "c"], r.stderr

    # a, the page's first node, leaves: the page is renamed after c; b moves up the spec.
    spec = write_spec(tmp_path / "s.yaml", "demo", ["c", "b"])
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    keys = _keys(etcd, "/netplan/demo/")
    assert sorted(k for k in keys if "/nodes/" in k or "/leases/" in k) == [
        "/netplan/demo/leases/b/pods-v4", "/netplan/demo/leases/c/pods-v4",
        "/netplan/demo/nodes/b"]
    assert {n: e["index"] for n, e in _pages(etcd, "demo")["b"].items()} == {"c": 0, "b": 1}
    assert netplan("check", "--store", etcd.url).returncode == 0

    # A record stored whole (by an older netplan) reads the same, and the next write moves
    # its hosts to node pages.
    store = open_store(etcd.url, StoreOptions())
    before = store.snapshot().clusters["demo"].record
    with etcd.client() as client:
        client.delete_prefix("/netplan/demo/nodes/")
        client.put("/netplan/demo/record", record_to_json(before))
    assert store.snapshot().clusters["demo"].record == before
    assert netplan("allocate", "-f", spec, "--store", etcd.url).returncode == 0
    assert list(_pages(etcd, "demo")) == ["b"]
    assert store.snapshot().clusters["demo"].record == before
    store.close()


def big_spec(path, cluster: str, names: list[str]) -> Path:
    """A spec of many nodes in one IPv4 /8 pool (addresses from 100.64.0.1), no BGP."""
    first = ipaddress.ip_address("100.64.0.1")
    path.write_text(yaml.safe_dump({
        "cluster": cluster,
        "pools": [{"name": "pods-v4", "cidr": "10.0.0.0/8", "nodeMaskSize": 24}],
        "services": {"cidr": "172.16.0.0/12"},
        "bgp": {"topology": "none"},
        "nodes": [{"name": n, "address": str(first + i)} for i, n in enumerate(names)],
    }))
    return path


def test_long_node_names_make_pages_larger_than_one_request_or_one_reply(etcd, tmp_path):
    """20,000 nodes named with 200 characters: pages of about 18 KiB, 5.3 MiB of them, more
    than a gRPC reply takes by default (4 MiB) and more than one etcd request (1.5 MiB)."""
    names = [f"{'n' * 190}-{i:05d}.x" for i in range(20_000)]
    spec = big_spec(tmp_path / "long.yaml", "long", names)
    r = netplan("allocate", "-f", str(spec), "--store", etcd.url, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    pages = _keys(etcd, "/netplan/long/nodes/", limit=100)
    assert sum(len(v) for v in pages.values()) > 5 * 2**20
    r = netplan("show", "--cluster", "long", "--store", etcd.url, "-o", "json", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [n["name"] for n in json.loads(r.stdout)["nodes"]] == names


NODES = 30_000


def test_a_cluster_of_30000_nodes_on_a_default_etcd(etcd, tmp_path):
    """One record of 30,000 nodes is some 2 MiB of JSON: more than etcd takes in a request
    (1.5 MiB by default). Stored node by node, it is allocated, shown and checked."""
    names = [f"node-{i:05d}" for i in range(NODES)]
    spec = big_spec(tmp_path / "big.yaml", "big", names)
    began = time.monotonic()
    r = netplan("allocate", "-f", str(spec), "--store", etcd.url, "-o", "json", timeout=600)
    allocated = time.monotonic() - began
    assert r.returncode == 0, r.stderr[-2000:]

    began = time.monotonic()
    r = netplan("show", "--cluster", "big", "--store", etcd.url, "-o", "json", timeout=600)
    shown = time.monotonic() - began
    assert r.returncode == 0, r.stderr[-2000:]
    nodes = json.loads(r.stdout)["nodes"]
    assert [n["name"] for n in nodes] == names
    assert len({c for n in nodes for c in n["podCIDRs"]}) == NODES
    last = ipaddress.ip_address("10.0.0.0") + 256 * (NODES - 1)
    assert nodes[-1]["podCIDRs"] == [f"{last}/24"]

    r = netplan("check", "--store", etcd.url, "-o", "json", timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["problems"] == [] and report["warnings"] == [] and report["leases"] == NODES

    keys = _keys(etcd, "/netplan/big/")
    record = keys["/netplan/big/record"]
    pages = [json.loads(v) for k, v in keys.items() if "/nodes/" in k]
    node_bytes = sum(len(v) for k, v in keys.items() if "/nodes/" in k)
    assert len(record) < 1024
    assert sum(len(p) for p in pages) == NODES and max(len(p) for p in pages) <= 512
    print(f"\n{NODES} nodes on a default etcd: allocate {allocated:.1f}s, show {shown:.1f}s; "
          f"record key {len(record)} bytes, {len(pages)} node pages {node_bytes / 2**20:.2f} "
          "MiB in all "
          f"(one record would be {len(record_to_json(_whole(etcd))) / 2**20:.2f} MiB)")


def _whole(etcd):
    store = open_store(etcd.url, StoreOptions())
    try:
        return store.snapshot().clusters["big"].record
    finally:
        store.close()
