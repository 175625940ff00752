"""netplan capacity: every number against values computed by hand.

Pods per node (planner/capacity.py): addresses of a node CIDR less network, gateway and,
for IPv4, broadcast (CNI host-local), at most --max-pods (110). Changes are sized for
max(allocated + growth x 24 months, capacity + 1) nodes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_support import assert_one_error_line
from ipam.net import parse_cidr
from ipam.pool import Pool, PoolMap
from planner.capacity import node_cidrs, parse_growth


def _nodes(count: int, prefix: str) -> list[dict]:
    return [{"name": f"n{i:03d}", "address": f"{prefix}{i + 1}"} for i in range(count)]


def _spec(pool: dict, nodes: list[dict], **extra) -> dict:
    return {"cluster": "cap", "pools": [pool], "nodes": nodes, "bgp": {"topology": "none"},
            **extra}


def capacity(netplan, spec: dict, *args: str) -> dict:
    r = netplan("capacity", "-f", netplan.spec(spec), "--store", "memory:", "-o", "json",
                *args)
    return r.json()


def test_slash16_with_slash24_and_a_reserved_range(netplan):
    # 256 /24s, one reserved: 255; 3 nodes; 252 fit; 252 / 10 a month = 25.2 months.
    # A /24 has 256 addresses, 253 for pods (less .0, the gateway .1, broadcast .255): 110.
    # Sized for max(3 + 10 x 24, 255 + 1) = 256 nodes.
    spec = _spec({"name": "pods-v4", "cidr": "10.244.0.0/16", "nodeMaskSize": 24},
                 _nodes(3, "10.0.0.1"), reserved=["10.244.255.0/24"])
    data = capacity(netplan, spec, "--growth", "10/month")
    (pool,) = data["pools"]
    assert {k: pool[k] for k in ("capacity", "allocated", "nodesThatFit", "monthsLeft",
                                 "addressesPerNode", "podAddressesPerNode", "podsPerNode",
                                 "changesSizedFor")} == {
        "capacity": 255, "allocated": 3, "nodesThatFit": 252, "monthsLeft": 25.2,
        "addressesPerNode": 256, "podAddressesPerNode": 253, "podsPerNode": 110,
        "changesSizedFor": 256}
    assert (data["nodesThatFit"], data["monthsLeft"]) == (252, 25.2)
    bigger, smaller, new = pool["changes"]
    # /15: 512 /24s less the reserved one; every lease still fits
    assert bigger["set"] == {"pools[0].cidr": "10.244.0.0/15"}
    assert (bigger["capacity"], bigger["podsPerNode"]) == (511, 110)
    assert bigger["consequence"] == "every node keeps its CIDR"
    # /25: 512 /25s less the two in the reserved /24; 125 addresses for pods, so still 110
    assert smaller["set"] == {"pools[0].nodeMaskSize": 25}
    assert (smaller["capacity"], smaller["podsPerNode"]) == (510, 110)
    assert "re-addressed" in smaller["consequence"]
    # 256 nodes fit a /16; 10.0.0.0/16 holds the nodes' addresses, 10.1.0.0/16 is free
    assert new["set"] == {"pools[0].cidr": "10.1.0.0/16"}
    assert (new["capacity"], new["podsPerNode"]) == (256, 110)


def test_slash16_with_slash26(netplan):
    # 1,024 /26s; 100 nodes; 924 fit; 924 / 50 = 18.48 months. A /26: 64 addresses, 61
    # for pods. Sized for max(100 + 50 x 24, 1,025) = 1,300 nodes.
    spec = _spec({"name": "pods-v4", "cidr": "10.244.0.0/16", "nodeMaskSize": 26},
                 _nodes(100, "10.0.0."))
    (pool,) = capacity(netplan, spec, "--growth", "50")["pools"]
    assert (pool["capacity"], pool["nodesThatFit"], pool["monthsLeft"]) == (1024, 924, 18.5)
    assert (pool["addressesPerNode"], pool["podAddressesPerNode"], pool["podsPerNode"]) == (
        64, 61, 61)
    assert pool["changesSizedFor"] == 1300
    bigger, smaller, new = pool["changes"]
    assert (bigger["set"], bigger["capacity"], bigger["podsPerNode"]) == (
        {"pools[0].cidr": "10.244.0.0/15"}, 2048, 61)
    # /27: 2,048 node CIDRs of 32 addresses, 29 for pods
    assert (smaller["set"], smaller["capacity"], smaller["podsPerNode"]) == (
        {"pools[0].nodeMaskSize": 27}, 2048, 29)
    assert "pods per node fall from 61 to 29" in smaller["consequence"]
    assert "kubelet --max-pods must be at most 29" in smaller["consequence"]
    # 2^11 = 2,048 >= 1,300 /26s: a /15; 10.0.0.0/15 holds the nodes
    assert (new["set"], new["capacity"]) == ({"pools[0].cidr": "10.2.0.0/15"}, 2048)


def test_slash8_with_slash24(netplan):
    # 65,536 /24s; 10 nodes; 65,526 fit; 65.526 months at 1,000 a month. Sized for
    # max(10 + 24,000, 65,537) = 65,537 nodes: a /7, which no private range holds.
    spec = _spec({"name": "pods-v4", "cidr": "10.0.0.0/8", "nodeMaskSize": 24},
                 _nodes(10, "192.168.0."), services={"cidr": "172.16.0.0/12"})
    (pool,) = capacity(netplan, spec, "--growth", "1000/month")["pools"]
    assert (pool["capacity"], pool["nodesThatFit"], pool["monthsLeft"]) == (65536, 65526, 65.5)
    assert (pool["podAddressesPerNode"], pool["podsPerNode"], pool["changesSizedFor"]) == (
        253, 110, 65537)
    bigger, smaller, new = pool["changes"]
    assert (bigger["set"], bigger["capacity"]) == ({"pools[0].cidr": "10.0.0.0/7"}, 131072)
    assert "outside the private ranges" in bigger["consequence"]
    assert (smaller["set"], smaller["capacity"], smaller["podsPerNode"]) == (
        {"pools[0].nodeMaskSize": 25}, 131072, 110)
    assert new["set"] is None and new["capacity"] is None
    assert "/7" in new["consequence"]


def test_ipv6_slash48_with_slash64(netplan):
    # 65,536 /64s, Kubernetes' most (16 bits); 4 nodes; 65,532 fit; 655.32 months at 100.
    # A /64: 2^64 addresses, 2^64 - 2 for pods (less the network and the gateway): 110.
    # 65,537 nodes would need 17 bits: no change can get there.
    spec = _spec({"name": "pods-v6", "cidr": "fd00:10::/48", "nodeMaskSize": 64},
                 _nodes(4, "10.0.0."))
    (pool,) = capacity(netplan, spec, "--growth", "100/month")["pools"]
    assert (pool["capacity"], pool["nodesThatFit"], pool["monthsLeft"]) == (65536, 65532, 655.3)
    assert pool["addressesPerNode"] == 2 ** 64
    assert (pool["podAddressesPerNode"], pool["podsPerNode"]) == (2 ** 64 - 2, 110)
    assert pool["changesSizedFor"] == 65537
    assert all(c["set"] is None for c in pool["changes"])
    assert "16 bits" in pool["changes"][0]["consequence"]


def test_no_growth_never_runs_out_and_max_pods_counts(netplan):
    spec = _spec({"name": "pods-v4", "cidr": "10.244.0.0/16", "nodeMaskSize": 24},
                 _nodes(3, "10.0.0.1"))
    data = capacity(netplan, spec, "--max-pods", "250")
    assert data["monthsLeft"] is None and data["pools"][0]["monthsLeft"] is None
    assert data["pools"][0]["podsPerNode"] == 250  # 253 addresses: the kubelet's cap rules


def test_the_table_says_it_in_words(netplan):
    spec = _spec({"name": "pods-v4", "cidr": "10.244.0.0/16", "nodeMaskSize": 24},
                 _nodes(3, "10.0.0.1"))
    r = netplan("capacity", "-f", netplan.spec(spec), "--store", "memory:", "--growth",
                "10/month")
    assert r.returncode == 0, r.describe()
    for words in ("room for 253 more", "25.3 months", "bigger pool", "smaller node CIDRs",
                  "new pool", "pools[0].cidr = 10.244.0.0/15"):
        assert words in r.stdout, r.stdout


@pytest.mark.parametrize("growth, per_month", [("12", 12.0), ("12/month", 12.0),
                                               ("3/week", 13.0), ("120/year", 10.0),
                                               ("0.5/month", 0.5)])
def test_growth_forms(growth, per_month):
    assert parse_growth(growth) == pytest.approx(per_month)


def test_bad_growth_is_malformed_input(netplan):
    spec = _spec({"name": "pods-v4", "cidr": "10.244.0.0/16", "nodeMaskSize": 24},
                 _nodes(1, "10.0.0.1"))
    r = netplan("capacity", "-f", netplan.spec(spec), "--store", "memory:", "--growth",
                "ten/month")
    assert "--growth" in assert_one_error_line(r, 2)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_node_cidr_count_matches_the_pool_bitmap(data):
    """node_cidrs' arithmetic against ipam's bitmap, reserved ranges nested or overlapping."""
    prefixlen = data.draw(st.integers(16, 24))
    mask = data.draw(st.integers(prefixlen, min(32, prefixlen + 8)))
    cidr = parse_cidr(f"10.0.0.0/{prefixlen}")
    reserved = []
    for _ in range(data.draw(st.integers(0, 5))):
        length = data.draw(st.integers(prefixlen, 32))
        index = data.draw(st.integers(0, (1 << (length - prefixlen)) - 1))
        reserved.append(cidr.subnet(length, index))
    reserved = tuple(reserved)
    assert node_cidrs(cidr, mask, reserved) == PoolMap(Pool("p", cidr, mask), reserved).capacity
