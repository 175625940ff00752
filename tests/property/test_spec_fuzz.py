"""Any input, however wrong, ends in netplan's own errors: a spec that is almost right in a
thousand ways is refused with InvalidInput, planned, or found unsatisfiable; never a
traceback (KeyError, TypeError, ...) that the CLI would have to hide."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipam.errors import InvalidInput, NetplanError
from ipam.state import Snapshot
from planner.plan import build_plan
from planner.routing import topology_of
from planner.spec import load_spec_text, parse_spec

# Values that are right somewhere and wrong elsewhere.
scalars = st.sampled_from([
    "demo", "node-a", "", " ", "Demo", "a" * 300, "10.244.0.0/16", "10.244.0.0/24",
    "10.244.1.0/24", "10.96.0.0/12", "10.0.0.0/8", "0.0.0.0/0", "10.244.0.1/16", "auto",
    "fd00:10:244::/56", "fd00::/64", "::/0", "10.0.0.11", "10.0.0.12", "127.0.0.1", "fd00::11",
    "::1", "256.0.0.1", "10.1", "flannel", "calico", "full-mesh", "route-reflector", "none",
    "rr", "r1", "true", "TOR_PASSWORD", 0, 1, 24, 26, 33, 64, 129, 179, 64512, -1, 2**32,
    2**64, 1.5, True, False, None, [], {},
]) | st.text(max_size=8) | st.integers()

# A valid spec that uses every field; the fuzzer breaks it in one to three places.
BASE = {
    "cluster": "demo",
    "preset": "flannel",
    "pools": [{"name": "pods-v4", "cidr": "10.244.0.0/16", "nodeMaskSize": 24},
              {"name": "pods-v6", "cidr": "fd00:10:244::/56", "nodeMaskSize": 64}],
    "services": {"cidrs": ["10.96.0.0/12", "fd00:10:96::/108"]},
    "reserved": ["10.244.255.0/24"],
    "avoid": ["10.0.0.0/16"],
    "nodes": [
        {"name": "node-a", "addresses": ["10.1.0.11", "fd00::11"],
         "labels": {"rack": "r1", "role": "rr"}, "podCIDRs": ["10.244.9.0/24"]},
        {"name": "node-b", "address": "10.1.0.12", "routerId": "10.1.0.12",
         "labels": {"rack": "r2"}, "bgpPort": 1179},
        {"name": "node-c", "address": "fd00::13", "routerId": "10.1.0.13"},
    ],
    "bgp": {"asNumber": 64512, "port": 179, "topology": "route-reflector",
            "routeReflectors": {"names": ["node-a"], "selector": {"role": "rr"},
                                "clusterId": "10.1.0.1"},
            "peers": [{"address": "10.1.0.254", "asNumber": 65001, "port": 179,
                       "nodeSelector": {"rack": "r1"}}]},
}


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*path, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _paths(inner, (*path, i))


PATHS = [p for p in _paths(BASE) if p]


def anything(depth: int = 2) -> st.SearchStrategy:
    if depth == 0:
        return scalars
    inner = anything(depth - 1)
    return scalars | st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "cidr", "x", "rack", ""]) | st.text(max_size=4), inner,
        max_size=3)


def mutated(mutations) -> dict:
    spec = copy.deepcopy(BASE)
    for path, action, value in mutations:
        parent = spec
        for step in path[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = path[-1]
            try:
                if action == "delete":
                    del parent[last]
                elif action == "append" and isinstance(parent[last], list):
                    parent[last].append(value)
                else:
                    parent[last] = value
            except (KeyError, IndexError, TypeError):
                pass
    return spec


specs = st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "delete", "append"]),
                           anything()), min_size=1, max_size=3).map(mutated)


def test_the_base_spec_is_valid_and_plans():
    spec = parse_spec(copy.deepcopy(BASE))
    topology_of(spec, build_plan(spec, Snapshot()))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_any_spec_is_planned_or_refused_with_netplans_own_errors(data):
    try:
        spec = parse_spec(data)
    except InvalidInput:
        return
    try:
        plan = build_plan(spec, Snapshot())
        topology_of(spec, plan)
    except NetplanError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_text_is_a_spec_or_invalid_input(raw):
    try:
        load_spec_text(raw)
    except InvalidInput:
        pass
