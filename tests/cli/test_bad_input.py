"""Malformed input (DESIGN.md sections 2 and 5): exit 2, one `error:` line, nothing written.

Every case runs `netplan allocate -f SPEC --store DB` against a store that already holds a
valid cluster (`demo`, see cli_support.BASE_SPEC) and checks that the store file is byte for
byte what it was and that `show -o json` still prints the same thing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from collections.abc import Callable

import pytest

from cli_support import assert_one_error_line, assert_store_unchanged, derive, sha256


def base() -> dict:
    return derive()


def node(spec: dict, i: int) -> dict:
    return spec["nodes"][i]


def _set(mapping: dict, key: str, value) -> None:
    mapping[key] = value


def _without(mapping: dict, key: str) -> None:
    del mapping[key]


def _v4_only(spec: dict) -> dict:
    """BASE_SPEC reduced to one IPv4 pool and IPv4 addresses (cases about IPv4 details)."""
    spec["pools"] = spec["pools"][:1]
    spec["services"] = {"cidr": "10.96.0.0/12"}
    for i, n in enumerate(spec["nodes"]):
        n.pop("addresses")
        n["address"] = f"10.0.0.1{i + 1}"
    return spec


def v4(change: Callable[[dict], object] = lambda s: None) -> dict:
    spec = _v4_only(base())
    change(spec)
    return spec


@dataclass
class Case:
    id: str
    spec: dict | str | bytes  # a dict is written as YAML
    expect: tuple[str, ...]  # substrings the error line must contain
    args: tuple[str, ...] = ()  # extra arguments
    store: str | None = None  # replaces --store DB


GARBAGE = bytes([0x00, 0xFF, 0xFE, 0x00]) + random.Random(20240229).randbytes(512) + b"\xc3\x28"

VALID_YAML_HEAD = "cluster: demo\nnodes:\n  - name: node-a\n    address: 10.0.0.11\n"

CASES = [
    # --- YAML itself --------------------------------------------------------------------
    Case("yaml-unclosed-flow", "cluster: demo\npools: [\n  {name: p, cidr: 10.244.0.0/16\n",
         ("line",)),
    Case("yaml-tab-indent",
         "cluster: demo\nnodes:\n\t- name: node-a\n\t  address: 10.0.0.11\n", ("line 3",)),
    Case("yaml-bad-indent",
         "cluster: demo\npools:\n  - name: pods-v4\n     cidr: 10.244.0.0/16\n"
         "   nodeMaskSize: 24\n", ("line 4",)),
    Case("yaml-duplicate-top-key", VALID_YAML_HEAD + "cluster: other\n",
         ("line 5", "cluster", "duplicate")),
    Case("empty-file", "", ("spec",)),
    Case("only-comments", "# nothing here\n   # still nothing\n\n", ("spec",)),
    Case("binary-garbage", GARBAGE, ("spec",)),
    Case("top-level-list", "- cluster: demo\n- nodes: []\n", ("spec", "mapping")),
    Case("nodes-a-mapping", "cluster: demo\nnodes: {name: node-a}\n",
         ("nodes: '{name: node-a}' must be a list",)),
    # --- unknown keys -------------------------------------------------------------------
    Case("unknown-top-key", derive(lambda s: _set(s, "podz", [])), ("podz",)),
    Case("unknown-pool-key", derive(lambda s: _set(s["pools"][0], "mask", 24)),
         ("pools[0].mask",)),
    Case("unknown-node-key", derive(lambda s: _set(node(s, 1), "adress", "10.0.0.99")),
         ("nodes[1].adress",)),
    Case("unknown-bgp-key", derive(lambda s: _set(s["bgp"], "asn", 64512)), ("bgp.asn",)),
    Case("unknown-peer-key",
         derive(lambda s: _set(s["bgp"], "peers",
                               [{"address": "10.0.0.254", "asNumber": 65001, "asn": 1}])),
         ("bgp.peers[0].asn",)),
    # --- CIDR syntax ----------------------------------------------------------------------
    Case("cidr-short-address", derive(lambda s: _set(s["pools"][0], "cidr", "10.244.0/16")),
         ("pools[0].cidr", "10.244.0/16")),
    Case("cidr-host-bits", derive(lambda s: _set(s["pools"][0], "cidr", "10.244.1.0/16")),
         ("pools[0].cidr", "10.244.1.0/16")),
    Case("cidr-ipv6-host-bits",
         derive(lambda s: _set(s["pools"][1], "cidr", "fd00:10:244::1/56")),
         ("pools[1].cidr", "fd00:10:244::1/56")),
    Case("cidr-prefix-over-32", derive(lambda s: _set(s["pools"][0], "cidr", "10.244.0.0/33")),
         ("pools[0].cidr", "10.244.0.0/33")),
    Case("cidr-non-ascii-digits",
         derive(lambda s: _set(s["pools"][0], "cidr", "10.244.0.0/\u0661\u0666")),
         ("pools[0].cidr",)),
    # --- values out of range --------------------------------------------------------------
    Case("mask-below-pool-prefix", derive(lambda s: _set(s["pools"][0], "nodeMaskSize", 8)),
         ("pools[0].nodeMaskSize", "8")),
    Case("mask-over-32", derive(lambda s: _set(s["pools"][0], "nodeMaskSize", 33)),
         ("pools[0].nodeMaskSize", "33")),
    Case("mask-over-128", derive(lambda s: _set(s["pools"][1], "nodeMaskSize", 129)),
         ("pools[1].nodeMaskSize", "129")),
    Case("ipv6-pool-17-bits-wide",
         derive(lambda s: s["pools"][1].update(cidr="fd00:10:244::/48", nodeMaskSize=65)),
         ("pools[1].nodeMaskSize", "65")),
    Case("services-larger-than-12", v4(lambda s: _set(s, "services", {"cidr": "10.64.0.0/11"})),
         ("services.cidr", "10.64.0.0/11")),
    Case("ipv6-services-larger-than-108",
         derive(lambda s: _set(s, "services",
                               {"cidrs": ["10.96.0.0/12", "fd00:10:96::/107"]})),
         ("services.cidrs[1]", "fd00:10:96::/107")),
    Case("as-number-zero", derive(lambda s: _set(s["bgp"], "asNumber", 0)),
         ("bgp.asNumber", " 0 ")),
    Case("as-number-2-pow-32", derive(lambda s: _set(s["bgp"], "asNumber", 4294967296)),
         ("bgp.asNumber", "4294967296")),
    # --- duplicates -----------------------------------------------------------------------
    Case("duplicate-pool-names", derive(lambda s: _set(s["pools"][1], "name", "pods-v4")),
         ("pools[1].name", "pods-v4")),
    Case("duplicate-node-names", derive(lambda s: _set(node(s, 2), "name", "node-a")),
         ("nodes[2].name", "node-a")),
    Case("duplicate-node-addresses", v4(lambda s: _set(node(s, 1), "address", "10.0.0.11")),
         ("nodes[1].address", "10.0.0.11")),
    Case("two-ipv4-addresses-on-a-node",
         v4(lambda s: (_without(node(s, 0), "address"),
                       _set(node(s, 0), "addresses", ["10.0.0.11", "10.0.0.21"]))),
         ("nodes[0].addresses[1]", "10.0.0.21")),
    # --- wrong types ----------------------------------------------------------------------
    Case("mask-is-a-string", derive(lambda s: _set(s["pools"][0], "nodeMaskSize", "24")),
         ("pools[0].nodeMaskSize", "24")),
    Case("as-number-is-a-bool", derive(lambda s: _set(s["bgp"], "asNumber", True)),
         ("bgp.asNumber", "True")),
    Case("nodes-is-a-string", derive(lambda s: _set(s, "nodes", "node-a, node-b")),
         ("nodes", "node-a, node-b")),
    Case("labels-is-a-list", derive(lambda s: _set(node(s, 0), "labels", ["rack=r1"])),
         ("nodes[0].labels",)),
    # --- names ----------------------------------------------------------------------------
    Case("cluster-upper-case", derive(lambda s: _set(s, "cluster", "Demo")), ("cluster", "Demo")),
    Case("cluster-64-chars", derive(lambda s: _set(s, "cluster", "c" * 64)),
         ("cluster", "c" * 64)),
    Case("cluster-missing", derive(lambda s: _without(s, "cluster")), ("cluster",)),
    # --- BGP topology and references ------------------------------------------------------
    Case("bad-topology", derive(lambda s: _set(s["bgp"], "topology", "star")),
         ("bgp.topology", "star")),
    Case("reflector-name-not-a-node",
         derive(lambda s: s["bgp"].update(topology="route-reflector",
                                          routeReflectors={"names": ["node-z"]})),
         ("bgp.routeReflectors.names[0]", "node-z")),
    Case("reflector-selector-matches-nothing",
         derive(lambda s: s["bgp"].update(topology="route-reflector",
                                          routeReflectors={"selector": {"role": "spine"}})),
         ("bgp.routeReflectors.selector", "spine")),
    Case("route-reflector-without-reflectors",
         derive(lambda s: _set(s["bgp"], "topology", "route-reflector")),
         ("bgp.routeReflectors",)),
    Case("ipv6-only-node-without-router-id",
         derive(lambda s: _set(node(s, 1), "addresses", ["fd00:0:0:1::12"])),
         ("nodes[1].routerId",)),
    # --- pins and reserved ranges (references into the resolved pools) ---------------------
    Case("pin-outside-every-pool",
         derive(lambda s: _set(node(s, 0), "podCIDRs", ["10.245.9.0/24"])),
         ("nodes[0].podCIDRs[0]", "10.245.9.0/24")),
    Case("pin-wrong-mask",
         derive(lambda s: _set(node(s, 0), "podCIDRs", ["10.244.8.0/23"])),
         ("nodes[0].podCIDRs[0]", "10.244.8.0/23")),
    Case("two-pins-in-one-pool",
         derive(lambda s: _set(node(s, 0), "podCIDRs", ["10.244.9.0/24", "10.244.10.0/24"])),
         ("nodes[0].podCIDRs[1]", "10.244.10.0/24")),
    Case("reserved-outside-every-pool", derive(lambda s: _set(s, "reserved", ["10.250.0.0/24"])),
         ("reserved[0]", "10.250.0.0/24")),
    # --- flags ----------------------------------------------------------------------------
    Case("output-xml", base(), ("xml",), args=("-o", "xml")),
    Case("store-unknown-scheme", base(), ("foo://x",), store="foo://x"),
]


def test_enough_distinct_cases():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_spec_is_rejected_and_writes_nothing(netplan, populated_store, case: Case):
    spec = netplan.spec(case.spec)
    store = case.store if case.store is not None else populated_store.path
    r = netplan("allocate", "-f", spec, "--store", store, *case.args)
    line = assert_one_error_line(r, 2)
    missing = [s for s in case.expect if s not in line]
    assert not missing, f"the error line does not name {missing}: {line!r}"
    assert_store_unchanged(netplan, populated_store)


def test_missing_spec_file(netplan, populated_store):
    r = netplan("allocate", "-f", netplan.cwd / "no-such-spec.yaml",
                "--store", populated_store.path)
    line = assert_one_error_line(r, 2)
    assert "no-such-spec.yaml" in line
    assert_store_unchanged(netplan, populated_store)


def test_empty_spec_on_standard_input(netplan, populated_store):
    r = netplan("allocate", "-f", "-", "--store", populated_store.path, stdin=b"")
    line = assert_one_error_line(r, 2)
    assert line == "error: spec: '-' is empty: it needs at least `cluster: NAME`"
    assert_store_unchanged(netplan, populated_store)


def test_spec_is_a_directory(netplan, populated_store):
    d = netplan.cwd / "spec.d"
    d.mkdir()
    r = netplan("allocate", "-f", d, "--store", populated_store.path)
    line = assert_one_error_line(r, 2)
    assert "spec.d" in line
    assert_store_unchanged(netplan, populated_store)


def test_malformed_spec_never_creates_the_store(netplan):
    """Validation comes before any storage I/O: a missing store stays missing."""
    db = netplan.cwd / "fresh.db"
    spec = netplan.spec(derive(lambda s: _set(s["pools"][0], "cidr", "10.244.1.0/16")))
    for command in ("allocate", "plan"):
        r = netplan(command, "-f", spec, "--store", db)
        assert_one_error_line(r, 2)
        assert not db.exists(), f"{command} created the store"


def test_debug_shows_the_traceback_instead(netplan, populated_store):
    """--debug is the documented way to get a traceback; it still writes nothing."""
    spec = netplan.spec(derive(lambda s: _set(s["pools"][0], "cidr", "10.244.1.0/16")))
    r = netplan("allocate", "-f", spec, "--store", populated_store.path, "--debug")
    assert r.returncode != 0
    assert "Traceback" in r.stderr
    assert sha256(populated_store.path) == populated_store.digest
