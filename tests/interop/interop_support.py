"""Helpers of the interop tests: the documented behaviour of the targets, as small oracles.

- calico_sessions: which BGP sessions Calico sets up from a set of resources (the
  semantics of BGPConfiguration.nodeToNodeMeshEnabled and BGPPeer node/peer selectors,
  docs.tigera.io reference/resources/bgppeer), with a parser for the selector subset netplan
  writes; anything else fails the test rather than being guessed at.
- check_kube_controller_manager: the flag rules of kube-controller-manager's node IPAM
  (cmd/kube-controller-manager: setNodeCIDRMaskSizes; one cluster CIDR per family) and
  kubeadm's ValidatePodSubnetNodeMask (at most 16 bits between podSubnet and node mask).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import sys
from pathlib import Path

from ipam.state import Snapshot
from planner import interop, report
from planner.plan import build_plan
from planner.routing import topology_of
from planner.spec import Spec, load_spec_file, parse_spec

TESTS = Path(__file__).resolve().parents[1]

_TERM = re.compile(
    r"""\s*(?:(all\(\))|!has\(([^)]+)\)|([^\s=!]+)\s*==\s*(?:'([^']*)'|"([^"]*)"))\s*""")


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Calico's selector syntax, the subset of all(), !has(k), k == 'v' joined by &&."""
    result = True
    for term in selector.split("&&"):
        m = _TERM.fullmatch(term)
        assert m is not None, f"selector term {term!r} is outside the tested subset"
        everything, missing, key, single, double = m.groups()
        if everything:
            continue
        if missing:
            result &= missing not in labels
        else:
            result &= labels.get(key) == (single if single is not None else double)
    return result


def calico_sessions(docs: list[dict], nodes: dict[str, dict[str, str]]):
    """(node pairs, {node: external peer addresses}) that Calico peers from these resources.

    nodes: node name -> its labels (the spec's labels plus those the Node patches add).
    """
    config = next(d for d in docs if d["kind"] == "BGPConfiguration"
                  and d["metadata"]["name"] == "default")
    names = sorted(nodes)
    pairs: set[frozenset[str]] = set()
    if config["spec"].get("nodeToNodeMeshEnabled", True):
        pairs |= {frozenset((a, b)) for a in names for b in names if a < b}
    external: dict[str, set[str]] = {n: set() for n in names}
    for peer in (d for d in docs if d["kind"] == "BGPPeer"):
        spec = peer["spec"]
        selected = [n for n in names if selector_matches(spec.get("nodeSelector", "all()"),
                                                          nodes[n])]
        if "peerSelector" in spec:
            assert "peerIP" not in spec and "asNumber" not in spec  # Calico's rule
            others = [n for n in names if selector_matches(spec["peerSelector"], nodes[n])]
            # reversePeering Auto: the selected remote end peers back
            pairs |= {frozenset((a, b)) for a in selected for b in others if a != b}
        else:
            address = spec["peerIP"]
            if address.startswith("["):
                address = address[1:address.index("]")]
            elif address.count(":") == 1:
                address = address.split(":")[0]
            for n in selected:
                external[n].add(str(ipaddress.ip_address(address)))
    return pairs, external


def topology_sessions(topology: dict):
    """The same two views of `netplan topology -o json` (families folded together)."""
    pairs = {frozenset((n["name"], p["name"])) for n in topology["nodes"]
             for p in n["peers"] if p["name"] is not None}
    external = {n["name"]: {p["address"] for p in n["peers"] if p["name"] is None}
                for n in topology["nodes"]}
    return pairs, external


def check_kube_controller_manager(args: dict[str, str]) -> None:
    """Fail unless kube-controller-manager and kubeadm would take these node IPAM flags."""
    cidrs = [ipaddress.ip_network(c) for c in args["cluster-cidr"].split(",")]
    assert len(cidrs) <= 2, "at most two cluster CIDRs"
    assert len({c.version for c in cidrs}) == len(cidrs), "one cluster CIDR per family"
    assert "node-cidr-mask-size" not in args, "per-family mask flags only"
    families = {c.version for c in cidrs}
    for version in (4, 6):
        flag = f"node-cidr-mask-size-ipv{version}"
        if flag in args:
            # setNodeCIDRMaskSizes: a single-stack cluster refuses the other family's flag
            assert version in families, f"--{flag} in a cluster without IPv{version}"
    for c in cidrs:
        mask = int(args.get(f"node-cidr-mask-size-ipv{c.version}", 24 if c.version == 4
                            else 64))
        assert c.prefixlen <= mask <= c.max_prefixlen
        assert mask - c.prefixlen <= 16, "kubeadm: at most 16 bits between podSubnet and mask"
    services = [ipaddress.ip_network(c) for c in args["service-cluster-ip-range"].split(",")]
    assert len({s.version for s in services}) == len(services) <= 2
    assert all(s.max_prefixlen - s.prefixlen <= 20 for s in services)


def load_bad_input_cases():
    """The malformed specs of tests/cli/test_bad_input.py (its CASES), loaded under a name
    of our own so that pytest's own import of that module is left alone."""
    sys.path.insert(0, str(TESTS / "cli"))  # the module imports cli_support
    spec = importlib.util.spec_from_file_location(
        "netplan_interop_bad_input", TESTS / "cli" / "test_bad_input.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.CASES


# --- in process: the pure core, for the checks that need many plans ------------------------


def load(spec: dict | Path) -> Spec:
    return load_spec_file(str(spec)) if isinstance(spec, Path) else parse_spec(spec)


def render_text(spec: dict | Path, target: str, fmt: str | None = None) -> str:
    """What `netplan render TARGET -f SPEC --store memory: [-o FMT]` prints."""
    parsed = load(spec)
    plan = build_plan(parsed, Snapshot())
    topology = topology_of(parsed, plan) if target == "calico" else None
    return interop.render(target, interop.cluster_facts(parsed, plan, topology), fmt)


def plan_json(spec: dict | Path) -> dict:
    """What `netplan plan -f SPEC --store memory: -o json` prints (less the bgp part)."""
    return report.plan_dict(build_plan(load(spec), Snapshot()))


def topology_json(spec: dict | Path) -> dict:
    """What `netplan topology -f SPEC -o json` prints."""
    return topology_of(load(spec)).to_dict()
