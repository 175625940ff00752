"""Well-formed specs that cannot be satisfied (DESIGN.md sections 2, 3 and 5).

Exit 1, one `error:` line that names both conflicting ranges or objects, and the store is
left exactly as it was. The store already holds cluster `demo` (cli_support.BASE_SPEC):

    pools     10.244.0.0/16 (/24), fd00:10:244::/56 (/64)   reserved 10.244.255.0/24
    services  10.96.0.0/12, fd00:10:96::/108                avoid    10.0.0.0/24
    nodes     node-a 10.0.0.11 fd00:0:0:1::11 -> 10.244.0.0/24
              node-b 10.0.0.12 fd00:0:0:1::12 -> 10.244.1.0/24
              node-c 10.0.0.13 fd00:0:0:1::13 -> 10.244.2.0/24

Cases named `within-*` re-plan `demo` itself, a second allocate (so the spec conflicts with
itself, or with demo's own leases: a pin on node-a's CIDR); cases named `across-*` plan a
second cluster `other` into the same store, whose ranges must stay clear of demo's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from cli_support import assert_one_error_line, assert_store_unchanged, derive


@dataclass
class Case:
    id: str
    spec: dict
    expect: tuple[str, ...]  # every one must be named by the error line
    any_of: tuple[str, ...] = ()  # at least one of these must be named too


def other(**fields) -> dict:
    """A second cluster, conflict-free with demo unless a field says otherwise."""
    spec = {
        "cluster": "other",
        "pools": [{"name": "pods-v4", "cidr": "10.50.0.0/16", "nodeMaskSize": 24}],
        "services": {"cidr": "10.128.0.0/12"},
        "nodes": [
            {"name": "other-1", "address": "192.168.50.1"},
            {"name": "other-2", "address": "192.168.50.2"},
        ],
    }
    spec.update(fields)
    return spec


def five_nodes(prefix: str) -> list[dict]:
    return [{"name": f"{prefix}-{i}", "address": f"192.168.60.{i}"} for i in range(1, 6)]


def add_pool(spec: dict, name: str, cidr: str, mask: int) -> None:
    spec["pools"].append({"name": name, "cidr": cidr, "nodeMaskSize": mask})


def set_v4_address(spec: dict, i: int, address: str) -> None:
    spec["nodes"][i]["addresses"][0] = address


def pin(spec: dict, i: int, *cidrs: str) -> None:
    spec["nodes"][i]["podCIDRs"] = list(cidrs)


def add_node(spec: dict, name: str, v4: str, v6: str, pins: list[str] | None = None) -> None:
    spec["nodes"].append({"name": name, "addresses": [v4, v6]} | (
        {"podCIDRs": pins} if pins else {}))


CASES = [
    # --- within one cluster ---------------------------------------------------------------
    Case("within-overlapping-pools-v4",
         derive(lambda s: add_pool(s, "extra-v4", "10.244.128.0/17", 24)),
         ("10.244.0.0/16", "10.244.128.0/17")),
    Case("within-overlapping-pools-v6",
         derive(lambda s: add_pool(s, "extra-v6", "fd00:10:244:80::/57", 64)),
         ("fd00:10:244::/56", "fd00:10:244:80::/57")),
    Case("within-pool-contains-node-address",
         derive(lambda s: set_v4_address(s, 1, "10.244.3.7")),
         ("10.244.0.0/16", "10.244.3.7")),
    Case("within-pool-overlaps-avoid",
         derive(lambda s: s["avoid"].append("10.244.128.0/20")),
         ("10.244.0.0/16", "10.244.128.0/20")),
    Case("within-services-inside-pool",
         derive(lambda s: s["services"].update(cidrs=["10.244.64.0/18", "fd00:10:96::/108"])),
         ("10.244.0.0/16", "10.244.64.0/18")),
    Case("within-services-overlap-avoid",
         derive(lambda s: s["avoid"].append("10.96.0.0/16")),
         ("10.96.0.0/12", "10.96.0.0/16")),
    # The pool also contains the address, so naming the pool is as right as naming the
    # reserved range; the node's address must be named in any case.
    Case("within-reserved-contains-node-address",
         derive(lambda s: set_v4_address(s, 2, "10.244.255.9")),
         ("10.244.255.9",), any_of=("10.244.255.0/24", "10.244.0.0/16")),
    Case("within-pin-held-by-another-node",
         derive(lambda s: add_node(s, "node-d", "10.0.0.14", "fd00:0:0:1::14",
                                   ["10.244.0.0/24"])),
         ("node-d", "node-a", "10.244.0.0/24")),
    Case("within-two-nodes-pin-the-same-cidr",
         derive(lambda s: (pin(s, 1, "10.244.9.0/24"), pin(s, 2, "10.244.9.0/24"))),
         ("node-b", "node-c", "10.244.9.0/24")),
    Case("within-pin-inside-reserved-range",
         derive(lambda s: (s.update(reserved=["10.244.240.0/20"]),
                           pin(s, 0, "10.244.250.0/24"))),
         ("node-a", "10.244.250.0/24", "10.244.240.0/20")),
    # --- across clusters in one store -----------------------------------------------------
    Case("across-pool-overlaps-pool-v4",
         other(pools=[{"name": "pods-v4", "cidr": "10.244.128.0/17", "nodeMaskSize": 24}]),
         ("10.244.128.0/17", "10.244.0.0/16")),
    Case("across-services-overlap-services",
         other(services={"cidr": "10.96.0.0/16"}),
         ("10.96.0.0/16", "10.96.0.0/12")),
    Case("across-pool-contains-node-address",
         other(pools=[{"name": "pods-v6", "cidr": "fd00::/48", "nodeMaskSize": 64}]),
         ("fd00::/48", "fd00:0:0:1::1")),  # fd00:0:0:1::11, ::12 or ::13
    Case("across-pool-overlaps-avoid",
         other(pools=[{"name": "pods-v4", "cidr": "10.0.0.0/26", "nodeMaskSize": 28}]),
         ("10.0.0.0/26", "10.0.0.0/24")),
    Case("across-node-address-inside-pool",
         other(nodes=[{"name": "other-1", "address": "10.244.7.7"}]),
         ("10.244.7.7", "10.244.0.0/16")),
    Case("across-avoid-over-pool",
         other(avoid=["10.244.0.0/16"]),
         ("10.244.0.0/16", "avoid")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_conflict_is_reported_and_writes_nothing(netplan, populated_store, case: Case):
    spec = netplan.spec(case.spec)
    r = netplan("allocate", "-f", spec, "--store", populated_store.path)
    line = assert_one_error_line(r, 1)
    missing = [s for s in case.expect if s not in line]
    assert not missing, f"the error line does not name {missing}: {line!r}"
    if case.any_of:
        assert any(s in line for s in case.any_of), f"none of {case.any_of} in {line!r}"
    assert_store_unchanged(netplan, populated_store)


EXHAUSTION = [
    pytest.param(other(pools=[{"name": "tiny-v4", "cidr": "10.250.0.0/22", "nodeMaskSize": 24}],
                       nodes=five_nodes("small")),
                 "tiny-v4", 4, 5, id="ipv4-22-with-5-nodes"),
    pytest.param(other(pools=[{"name": "tiny-v6", "cidr": "fd00:50::/62", "nodeMaskSize": 64}],
                       nodes=five_nodes("small")),
                 "tiny-v6", 4, 5, id="ipv6-62-with-5-nodes"),
    # Reserved node CIDRs do not count: a /22 less one reserved /24 holds 3.
    pytest.param(other(pools=[{"name": "tiny-v4", "cidr": "10.250.0.0/22", "nodeMaskSize": 24}],
                       reserved=["10.250.3.0/24"], nodes=five_nodes("small")[:4]),
                 "tiny-v4", 3, 4, id="ipv4-22-less-reserved-with-4-nodes"),
]


@pytest.mark.parametrize(("spec", "pool", "capacity", "asked"), EXHAUSTION)
def test_exhaustion_names_pool_capacity_and_demand(netplan, populated_store, spec, pool,
                                                   capacity, asked):
    r = netplan("allocate", "-f", netplan.spec(spec), "--store", populated_store.path)
    line = assert_one_error_line(r, 1)
    assert pool in line, line
    numbers = [int(n) for n in re.findall(r"(?<![\d./:])\d+(?![\d./:])", line)]
    assert capacity in numbers and asked in numbers, line
    assert "exhaust" in line.lower(), line
    assert_store_unchanged(netplan, populated_store)


def test_unsatisfiable_spec_never_creates_the_store(netplan):
    """Nothing is written on an unsatisfiable spec: a missing store stays missing."""
    db = netplan.cwd / "fresh.db"
    spec = netplan.spec(derive(lambda s: add_pool(s, "extra-v4", "10.244.128.0/17", 24)))
    for command in ("plan", "allocate"):
        r = netplan(command, "-f", spec, "--store", db)
        assert_one_error_line(r, 1)
        assert not db.exists(), f"`{command}` of an unsatisfiable spec created the store"
