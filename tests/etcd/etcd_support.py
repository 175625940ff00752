"""Helpers of the etcd integration tests: specs of many nodes and an independent oracle
that reads the leases straight from etcd and checks them with `ipaddress`."""

from __future__ import annotations

import ipaddress
import itertools
import json
from pathlib import Path

import yaml
from etcd_server import EtcdCluster

V4_POOL = "10.0.0.0/8"
V6_POOL = "fd00:10::/48"


def host_address(index: int) -> str:
    """A node address outside every pool and services range of these tests."""
    return str(ipaddress.ip_address("172.16.0.1") + index)


def write_spec(path: Path, cluster: str, nodes: list[str], offset: int = 0,
               dual_stack: bool = False) -> str:
    pools = [{"name": "pods-v4", "cidr": V4_POOL, "nodeMaskSize": 24}]
    if dual_stack:
        pools.append({"name": "pods-v6", "cidr": V6_POOL, "nodeMaskSize": 64})
    path.write_text(yaml.safe_dump({
        "cluster": cluster,
        "pools": pools,
        "services": {"cidr": "192.168.0.0/16"},
        "bgp": {"topology": "none"},
        "nodes": [{"name": n, "address": host_address(offset + i)} for i, n in enumerate(nodes)],
    }))
    return str(path)


def stored_leases(etcd: EtcdCluster, cluster: str, prefix: str = "/netplan",
                  **client_kwargs) -> list[dict]:
    """Every lease of a cluster as etcd holds it, checked against its key."""
    with etcd.client(**client_kwargs) as client:
        rows = []
        for value, meta in client.get_prefix(f"{prefix}/{cluster}/leases/"):
            lease = json.loads(value)
            assert meta.key.decode() == (f"{prefix}/{cluster}/leases/"
                                         f"{lease['node']}/{lease['pool']}"), meta.key
            rows.append(lease)
    return rows


def assert_no_overlap(leases: list[dict]) -> None:
    nets = sorted((ipaddress.ip_network(x["cidr"]) for x in leases),
                  key=lambda n: (n.version, n.network_address, n.prefixlen))
    for a, b in itertools.pairwise(nets):
        assert a.version != b.version or not a.overlaps(b), (a, b)


def assert_nodes_whole(leases: list[dict], pools: int) -> dict[str, list[dict]]:
    """Every node holds all of its leases or none: one per pool."""
    by_node: dict[str, list[dict]] = {}
    for x in leases:
        by_node.setdefault(x["node"], []).append(x)
    half = {n: xs for n, xs in by_node.items() if sorted(x["pool"] for x in xs) !=
            ["pods-v4", "pods-v6"][:pools]}
    assert not half, f"half-applied nodes: {list(half.items())[:3]}"
    return by_node


def lowest(pool: str, new_prefix: int, count: int) -> list[ipaddress.IPv4Network]:
    subnets = ipaddress.ip_network(pool).subnets(new_prefix=new_prefix)
    return [next(subnets) for _ in range(count)]


def lock_queue(client, queue: str, **kwargs) -> list[tuple[bytes, object]]:
    """The writers queued on a lock (`<queue>/<etcd lease id>`), its holder first:
    (their "pid@host", the key's metadata). kwargs: of the read (revision=...)."""
    return sorted(client.get_prefix(queue + "/", **kwargs),
                  key=lambda kv: kv[1].create_revision)


def lock_holder(client, queue: str, **kwargs) -> bytes | None:
    """The "pid@host" of the writer that holds a lock, None when it is free."""
    queued = lock_queue(client, queue, **kwargs)
    return queued[0][0] if queued else None


def enable_auth(etcd: EtcdCluster, password: str) -> None:
    """Turn etcd's auth on: user netplan, with this password, may read and write /netplan/
    only."""
    etcd.etcdctl("user", "add", "root:root-pw")
    etcd.etcdctl("user", "add", f"netplan:{password}")
    etcd.etcdctl("role", "add", "netplan")
    etcd.etcdctl("role", "grant-permission", "netplan", "--prefix=true", "readwrite", "/netplan/")
    etcd.etcdctl("user", "grant-role", "netplan", "netplan")
    etcd.etcdctl("auth", "enable")
