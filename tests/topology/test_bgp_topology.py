"""plan_topology: who peers with whom, passive ends, auto, external peers, warnings, errors."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgp.errors import TopologyError
from bgp.topology import plan_topology, summarize


def test_design_example_json(make_node, plan):
    nodes = [make_node(f"node-{c}", f"10.0.0.{11 + i}") for i, c in enumerate("abc")]
    document = json.loads(plan(nodes).to_json())
    assert {k: document[k] for k in ("cluster", "asNumber", "topology", "sessions")} == {
        "cluster": "demo",
        "asNumber": 64512,
        "topology": "full-mesh",
        "sessions": 3,
    }
    first = document["nodes"][0]
    assert (first["name"], first["address"], first["role"]) == ("node-a", "10.0.0.11", "client")
    assert first["peers"][0] == {
        "name": "node-b",
        "address": "10.0.0.12",
        "port": 179,
        "asNumber": 64512,
        "kind": "mesh",
        "passive": True,
        "rrClient": False,
    }
    assert set(document) == {
        "cluster",
        "asNumber",
        "topology",
        "nodes",
        "sessions",
        "warnings",
        "explanation",
    }
    assert document["warnings"] == []


@pytest.mark.parametrize("n", [3, 10, 200])
def test_full_mesh_peers_everyone_else(n, make_cluster, plan):
    topology = plan(make_cluster(n, v6=False))
    assert topology.sessions == n * (n - 1) // 2
    names = {entry.name for entry in topology.nodes}
    for entry in topology.nodes:
        assert len(entry.peers) == n - 1
        assert {peer.name for peer in entry.peers} == names - {entry.name}
        assert {peer.kind for peer in entry.peers} == {"mesh"}
        assert entry.role == "client"


@pytest.mark.parametrize(
    ("families", "sessions"),
    [
        ({"a": "4", "b": "4", "c": "4"}, 3),
        ({"a": "46", "b": "46", "c": "46"}, 6),
        ({"a": "4", "b": "46", "c": "46"}, 4),
        ({"a": "4", "b": "46", "c": "46", "d": "6"}, 6),  # a-b, a-c, b-c twice, b-d, c-d
        ({"a": "4", "b": "6"}, 0),
    ],
)
def test_dual_stack_doubles_only_where_both_ends_have_both(families, sessions, make_node, plan):
    nodes = [
        make_node(
            f"node-{name}",
            *([f"10.0.0.{i + 1}"] if "4" in fam else []),
            *([f"fd00::{i + 1}"] if "6" in fam else []),
            router_id=f"10.0.0.{i + 1}",
        )
        for i, (name, fam) in enumerate(families.items())
    ]
    topology = plan(nodes)
    assert topology.sessions == sessions
    assert sum(len(entry.peers) for entry in topology.nodes) == 2 * sessions


def test_twins_are_consecutive_ipv4_first(make_cluster, plan):
    for entry in plan(make_cluster(3)).nodes:
        first = entry.peers[0].name
        assert [(peer.name, peer.version) for peer in entry.peers[:2]] == [(first, 4), (first, 6)]
        assert all(peer.local_address.version == peer.version for peer in entry.peers)


def test_route_reflectors_by_name(make_cluster, make_settings, plan):
    reflectors = {"node-0003", "node-0007"}
    topology = plan(
        make_cluster(10, v6=False), make_settings("route-reflector", names=sorted(reflectors))
    )
    assert topology.sessions == 1 + 8 * 2
    for entry in topology.nodes:
        if entry.name in reflectors:
            assert entry.role == "reflector"
            assert entry.cluster_id == entry.node.router_id
            assert len(entry.peers) == 9
            kinds = {peer.name: (peer.kind, peer.rr_client) for peer in entry.peers}
            (other,) = reflectors - {entry.name}
            assert kinds.pop(other) == ("rr-mesh", False)
            assert set(kinds.values()) == {("rr-client", True)}
        else:
            assert entry.role == "client"
            assert entry.cluster_id is None
            assert sorted(peer.name for peer in entry.peers) == sorted(reflectors)
            assert {(peer.kind, peer.rr_client) for peer in entry.peers} == {("reflector", False)}


def test_reflectors_are_the_union_of_names_and_selector(
    make_cluster, make_node, make_settings, plan
):
    nodes = make_cluster(6, v6=False)
    nodes[4] = make_node("node-0004", "10.0.0.5", labels={"role": "rr"})
    bgp = make_settings(
        "route-reflector", names=["node-0001"], selector={"role": "rr"}, cluster_id="10.0.0.100"
    )
    topology = plan(nodes, bgp)
    assert [entry.name for entry in topology.nodes if entry.role == "reflector"] == [
        "node-0001",
        "node-0004",
    ]
    assert {entry.cluster_id for entry in topology.nodes if entry.role == "reflector"} == {
        IPv4Address("10.0.0.100")
    }


def test_none_has_only_external_sessions(make_cluster, make_settings, make_peer, plan):
    topology = plan(make_cluster(4), make_settings("none", peers=[make_peer("10.0.9.254")]))
    assert topology.sessions == 4
    assert all([peer.kind for peer in entry.peers] == ["external"] for entry in topology.nodes)


def test_external_peers_by_selector_and_family(make_node, make_settings, make_peer, plan):
    nodes = [
        make_node("node-a", "10.0.0.1", labels={"rack": "r1"}),
        make_node("node-b", "10.0.0.2", "fd00::2", labels={"rack": "r1"}),
        make_node("node-c", "10.0.0.3", "fd00::3", labels={"rack": "r2"}),
    ]
    peers = [
        make_peer(
            "10.0.9.1",
            as_number=65001,
            port=1179,
            selector={"rack": "r1"},
            password_env="TOR",
            password="pw",
        ),
        make_peer("fd00::9:2", as_number=65002),
    ]
    topology = plan(nodes, make_settings("none", peers=peers))
    seen = {
        entry.name: [
            (str(p.address), p.as_number, p.port, p.passive, p.password) for p in entry.peers
        ]
        for entry in topology.nodes
    }
    assert seen == {
        "node-a": [("10.0.9.1", 65001, 1179, False, "pw")],
        "node-b": [("10.0.9.1", 65001, 1179, False, "pw"), ("fd00::9:2", 65002, 179, False, None)],
        "node-c": [("fd00::9:2", 65002, 179, False, None)],
    }
    assert topology.sessions == 4
    assert all(
        peer.name is None and peer.kind == "external"
        for entry in topology.nodes
        for peer in entry.peers
    )
    assert json.loads(topology.to_json())["nodes"][0]["peers"][0]["name"] is None


def test_external_peers_come_after_node_peers(make_cluster, make_settings, make_peer, plan):
    topology = plan(make_cluster(3, v6=False), make_settings(peers=[make_peer("10.0.9.1")]))
    for entry in topology.nodes:
        assert [peer.kind for peer in entry.peers] == ["mesh", "mesh", "external"]
    assert topology.sessions == 3 + 3


def test_a_nodes_port_is_where_its_peers_connect(make_node, plan):
    a, b = plan(
        [make_node("node-a", "127.0.0.1", port=1790), make_node("node-b", "127.0.0.2", port=1791)]
    ).nodes
    assert (a.peers[0].port, b.peers[0].port) == (1791, 1790)


@pytest.mark.parametrize(
    ("n", "mode"), [(3, "full-mesh"), (50, "full-mesh"), (51, "route-reflector")]
)
def test_auto_switches_above_fifty(n, mode, make_cluster, make_settings, plan):
    topology = plan(make_cluster(n, v6=False), make_settings("auto"))
    assert topology.topology == mode
    assert topology.requested == "auto"
    assert topology.explanation.startswith(f"auto: {n} nodes")


def test_auto_picks_three_reflectors_without_racks_preferring_dual_stack(
    make_cluster, make_node, make_settings, plan
):
    nodes = make_cluster(60, v6=False)
    nodes[40] = make_node("node-0040", "10.0.0.41", "fd00::41")
    topology = plan(nodes, make_settings("auto"))
    assert [entry.name for entry in topology.nodes if entry.role == "reflector"] == [
        "node-0000",
        "node-0001",
        "node-0040",
    ]
    assert topology.explanation.endswith("node-0000, node-0001, node-0040")
    assert topology.sessions == 3 + 57 * 3


def test_auto_picks_two_reflectors_per_rack_serving_their_rack(
    make_cluster, make_node, make_settings, plan
):
    nodes = make_cluster(60, v6=False, racks=3)
    nodes[59] = make_node("node-0059", "10.0.0.60")  # no rack label: served by every reflector
    topology = plan(nodes, make_settings("auto"))
    reflectors = [
        (entry.name, entry.node.label("rack"))
        for entry in topology.nodes
        if entry.role == "reflector"
    ]
    assert reflectors == [
        ("node-0000", "r0"),
        ("node-0001", "r1"),
        ("node-0002", "r2"),
        ("node-0003", "r0"),
        ("node-0004", "r1"),
        ("node-0005", "r2"),
    ]
    assert topology.explanation.endswith(
        "r0: node-0000, node-0003; r1: node-0001, node-0004; r2: node-0002, node-0005"
    )
    rack_of = dict(reflectors)
    for entry in topology.nodes:
        if entry.role == "reflector":
            others = {peer.name for peer in entry.peers if peer.kind == "rr-mesh"}
            assert others == set(rack_of) - {entry.name}
        elif entry.name == "node-0059":
            assert sorted(peer.name for peer in entry.peers) == sorted(rack_of)
        else:
            rack = entry.node.label("rack")
            assert [peer.name for peer in entry.peers] == [n for n, r in reflectors if r == rack]
    assert topology.sessions == 15 + 53 * 2 + 6
    assert topology.warnings == ()


def test_auto_above_fifty_uses_the_spec_reflectors(make_cluster, make_settings, plan):
    topology = plan(
        make_cluster(51, v6=False), make_settings("auto", names=["node-0010", "node-0020"])
    )
    assert [entry.name for entry in topology.nodes if entry.role == "reflector"] == [
        "node-0010",
        "node-0020",
    ]
    assert "from bgp.routeReflectors" in topology.explanation


def test_auto_up_to_fifty_ignores_the_spec_reflectors(make_cluster, make_settings, plan):
    topology = plan(make_cluster(5, v6=False), make_settings("auto", names=["node-0001"]))
    assert topology.topology == "full-mesh"
    assert {entry.role for entry in topology.nodes} == {"client"}


# ---- the passive end: exactly one per session, the lower address --------------------------

clusters = st.lists(st.sampled_from(["4", "6", "46"]), min_size=1, max_size=14).flatmap(
    lambda families: st.tuples(
        st.just(families),
        st.permutations(range(len(families))),  # addresses in another order than names
        st.sampled_from(["full-mesh", "route-reflector", "auto", "none"]),
        st.sets(st.integers(0, len(families) - 1), min_size=1, max_size=3),
    )
)


@settings(max_examples=150, deadline=None)
@given(clusters)
def test_every_node_session_has_exactly_one_passive_end_the_lower_address(
    make_node, make_settings, plan, case
):
    families, order, mode, reflector_indices = case
    nodes = [
        make_node(
            f"n{i}",
            *([f"10.1.{order[i] % 3}.{order[i] + 1}"] if "4" in family else []),
            *([f"fd00::{order[i] + 1:x}"] if "6" in family else []),
            router_id=f"10.1.{order[i] % 3}.{order[i] + 1}",
        )
        for i, family in enumerate(families)
    ]
    topology = plan(nodes, make_settings(mode, names=[f"n{i}" for i in sorted(reflector_indices)]))
    ends = {
        (entry.name, peer.name, peer.version): peer
        for entry in topology.nodes
        for peer in entry.peers
        if peer.name is not None
    }
    opposite = {
        "mesh": "mesh",
        "rr-mesh": "rr-mesh",
        "reflector": "rr-client",
        "rr-client": "reflector",
    }
    for (me, other, version), peer in ends.items():
        twin = ends[(other, me, version)]
        assert peer.passive != twin.passive
        assert peer.passive == (peer.local_address < peer.address)
        assert twin.kind == opposite[peer.kind]
        assert (peer.address, peer.local_address) == (twin.local_address, twin.address)
    assert topology.sessions == len(ends) // 2


def test_passive_compares_numbers_not_strings(make_node, plan):
    # as strings "10.0.0.9" > "10.0.0.10"; as numbers it is the lower address
    a, b = plan([make_node("node-a", "10.0.0.10"), make_node("node-b", "10.0.0.9")]).nodes
    assert (a.peers[0].passive, b.peers[0].passive) == (False, True)


def test_plans_are_deterministic(make_cluster, make_settings, make_peer, plan):
    nodes = make_cluster(60, racks=4)
    bgp = make_settings("auto", peers=[make_peer("10.0.9.1", selector={"rack": "r1"})])
    assert plan(nodes, bgp) == plan(list(nodes), bgp)
    assert plan(nodes, bgp).to_json() == plan(nodes, bgp).to_json()


def test_sessions_do_not_depend_on_input_order(make_cluster, make_settings, plan):
    nodes = make_cluster(12, racks=3)
    bgp = make_settings("route-reflector", selector={"rack": "r1"})

    def sessions(topology):
        return {
            (entry.name, peer.name, str(peer.address), peer.kind, peer.passive)
            for entry in topology.nodes
            for peer in entry.peers
        }

    assert sessions(plan(nodes, bgp)) == sessions(plan(list(reversed(nodes)), bgp))


def test_five_thousand_nodes_with_route_reflectors(make_cluster, make_settings, plan):
    topology = plan(make_cluster(5000), make_settings("auto"))
    assert topology.topology == "route-reflector"
    assert topology.sessions == 2 * (3 + 4997 * 3)
    assert json.loads(topology.to_json())["sessions"] == topology.sessions


def test_five_thousand_nodes_in_fifty_racks(make_cluster, make_settings, plan):
    topology = plan(make_cluster(5000, v6=False, racks=50), make_settings("auto"))
    assert topology.sessions == 100 * 99 // 2 + 4900 * 2


# ---- warnings -------------------------------------------------------------------------------


def test_no_warning_for_a_full_mesh_of_one_hundred(make_cluster, plan):
    assert plan(make_cluster(100, v6=False)).warnings == ()


def test_full_mesh_past_one_hundred_warns_with_the_session_count(make_cluster, plan):
    (warning,) = plan(make_cluster(101, v6=False)).warnings
    assert warning.startswith("full mesh of 101 nodes: 5050 sessions between nodes")


def test_single_reflector_warns(make_cluster, make_settings, plan):
    (warning,) = plan(
        make_cluster(4), make_settings("route-reflector", names=["node-0002"])
    ).warnings
    assert warning.startswith("a single route reflector (node-0002): no redundancy")


def test_reflectors_in_one_rack_warn(make_cluster, make_settings, plan):
    nodes = make_cluster(6, racks=2)
    (warning,) = plan(
        nodes, make_settings("route-reflector", names=["node-0000", "node-0002"])
    ).warnings
    assert warning.startswith("all route reflectors are in rack r0")
    assert (
        plan(nodes, make_settings("route-reflector", names=["node-0000", "node-0001"])).warnings
        == ()
    )


def test_nodes_without_an_external_peer_warn(make_cluster, make_settings, make_peer, plan):
    topology = plan(
        make_cluster(4, racks=2),
        make_settings(peers=[make_peer("10.0.9.1", selector={"rack": "r0"})]),
    )
    (warning,) = topology.warnings
    assert warning.startswith("2 nodes have no session to any external peer")
    assert warning.endswith(": node-0001, node-0003")


def test_long_name_lists_are_cut(make_cluster, make_settings, make_peer, plan):
    topology = plan(
        make_cluster(30, racks=2),
        make_settings(peers=[make_peer("10.0.9.1", selector={"rack": "r0"})]),
    )
    (warning,) = topology.warnings
    assert warning.endswith("node-0017, node-0019 and 5 more")


def test_none_without_external_peers_warns(make_cluster, make_settings, plan):
    assert plan(make_cluster(2), make_settings("none")).warnings == (
        "topology none and no bgp.peers: no node has a BGP session",
    )


def test_a_node_sharing_no_family_warns(make_node, plan):
    nodes = [
        make_node("node-a", "10.0.0.1"),
        make_node("node-b", "10.0.0.2"),
        make_node("node-c", "fd00::3", router_id="10.0.0.3"),
    ]
    assert plan(nodes).warnings == (
        (
            "1 node has no session to another node, sharing no address family with any other node: "
            "node-c"
        ),
    )


def test_a_pod_cidr_without_a_node_address_of_its_family_warns(make_node, plan):
    nodes = [
        make_node("node-a", "10.0.0.1", pod_cidrs=["10.244.0.0/24", "fd00:10:244::/64"]),
        make_node("node-b", "10.0.0.2"),
    ]
    assert plan(nodes).warnings == (
        "1 node has IPv6 pod CIDRs but no IPv6 address, so no session announces them: node-a",
    )


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topology", "options", "message"),
    [
        (
            "route-reflector",
            {"names": ["node-x"]},
            "bgp.routeReflectors.names: 'node-x' is not a node of the spec",
        ),
        (
            "full-mesh",
            {"names": ["node-x"]},
            "bgp.routeReflectors.names: 'node-x' is not a node of the spec",
        ),
        (
            "route-reflector",
            {"selector": {"role": "rr"}},
            "bgp.routeReflectors.selector: {role: rr} matches no node",
        ),
        (
            "route-reflector",
            {},
            "bgp.topology: 'route-reflector' needs bgp.routeReflectors names or a selector",
        ),
        ("star", {}, "bgp.topology: 'star' is not one of full-mesh, route-reflector, none, auto"),
    ],
)
def test_reflector_and_topology_errors(
    topology, options, message, make_cluster, make_settings, plan
):
    with pytest.raises(TopologyError) as caught:
        plan(make_cluster(3), make_settings(topology, **options))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("peers", "message"),
    [
        (
            [("10.0.0.2", {})],
            "bgp.peers[0].address: '10.0.0.2' is also the address of node node-0001",
        ),
        (
            [("10.0.9.1", {}), ("10.0.9.1", {"as_number": 65002})],
            "bgp.peers[1].address: '10.0.9.1' is also bgp.peers[0].address",
        ),
        (
            [("10.0.9.1", {"password_env": "TOR", "password": "x" * 81})],
            (
                "bgp.peers[0].passwordEnv: 'TOR' holds a password of 81 bytes; "
                "TCP MD5 keys are at most 80"
            ),
        ),
        (
            [("10.0.9.1", {"password_env": "TOR", "password": 'a"b'})],
            (
                "bgp.peers[0].passwordEnv: 'TOR' holds a password with a double quote "
                "or a line break, which BIRD cannot read"
            ),
        ),
        (
            [("10.0.9.1", {"password_env": "TOR", "password": ""})],
            "bgp.peers[0].passwordEnv: 'TOR' holds an empty password",
        ),
    ],
)
def test_external_peer_errors(peers, message, make_cluster, make_settings, make_peer, plan):
    bgp = make_settings(peers=[make_peer(address, **options) for address, options in peers])
    with pytest.raises(TopologyError) as caught:
        plan(make_cluster(3), bgp)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_an_unknown_node_is_a_topology_error(make_cluster, plan):
    with pytest.raises(TopologyError, match=r"^--node: 'node-x' is not a node of the spec$"):
        plan(make_cluster(2)).node("node-x")


def test_a_password_of_80_bytes_is_fine(make_cluster, make_settings, make_peer, plan):
    topology = plan(
        make_cluster(2),
        make_settings(peers=[make_peer("10.0.9.1", password_env="T", password="é" * 40)]),
    )
    assert topology.nodes[0].peers[-1].password == "é" * 40


def test_json_addresses_are_of_the_router_id_family(make_node, plan):
    nodes = [
        make_node("node-a", "fd00::1", router_id="10.9.9.1"),
        make_node("node-b", "fd00::2", "10.0.0.2"),
    ]
    document = plan(nodes).to_dict()
    assert [(entry["name"], entry["address"]) for entry in document["nodes"]] == [
        ("node-a", "fd00::1"),
        ("node-b", "10.0.0.2"),
    ]
    assert ip_address(document["nodes"][1]["peers"][0]["address"]) == ip_address("fd00::1")


@pytest.mark.parametrize("n", [3, 101, 150])
def test_summary_counts_what_the_full_plan_builds(n, make_cluster, make_node, make_settings,
                                                   make_peer):
    # Mixed families: every third node IPv4 only, so the IPv6 mesh is smaller.
    nodes = [node if i % 3 else make_node(node.name, str(node.address), labels={"rack": "r1"})
             for i, node in enumerate(make_cluster(n))]
    settings = make_settings(peers=[make_peer("10.0.255.254", selector={"rack": "r1"}),
                                    make_peer("fd00::ffff")])
    full = plan_topology("demo", nodes, settings, ())
    summary = summarize("demo", nodes, settings)
    assert (summary.topology, summary.sessions) == (full.topology, full.sessions)
    assert summary.explanation == full.explanation
    assert any("full mesh of" in w for w in summary.warnings) == (n > 100)
