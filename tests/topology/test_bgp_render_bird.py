"""render_bird: each configuration parses with `bird -p` and says what it should."""

from __future__ import annotations

import re

import pytest

from bgp.render_bird import SYMBOL_MAX, render_bird
from bgp.topology import HIDDEN_PASSWORD


@pytest.fixture
def dual_stack(make_node, make_settings, make_peer, plan):
    nodes = [
        make_node(
            "node-a", "10.0.0.11", "fd00::11", pod_cidrs=["10.244.0.0/24", "fd00:10:244::/64"]
        ),
        make_node("node-b", "10.0.0.12", "fd00::12", pod_cidrs=["10.244.1.0/24"]),
        make_node("node-c", "10.0.0.13", pod_cidrs=["10.244.2.0/24"], labels={"rack": "r1"}),
        make_node(
            "node-d", "fd00::14", router_id="10.0.0.14", pod_cidrs=["fd00:10:244:3::/64"], port=1179
        ),
    ]
    peers = [
        make_peer(
            "10.0.0.254",
            as_number=65001,
            selector={"rack": "r1"},
            password_env="TOR_PASSWORD",
            password="s3cr3t #;'x",
        ),
        make_peer("fd00::254", as_number=4200000000, port=1790),
    ]
    return plan(nodes, make_settings(peers=peers))


@pytest.fixture
def reflected(make_cluster, make_settings, plan):
    return plan(
        make_cluster(6, racks=2), make_settings("route-reflector", names=["node-0000", "node-0001"])
    )


def test_every_node_of_a_dual_stack_mesh_with_external_peers_parses(dual_stack, bird_accepts):
    for entry in dual_stack.nodes:
        for options in ({}, {"show_secrets": True}, {"export_kernel": True}):
            bird_accepts(render_bird(dual_stack, entry.name, **options))


def test_every_node_of_a_route_reflector_cluster_parses(reflected, bird_accepts):
    for entry in reflected.nodes:
        bird_accepts(render_bird(reflected, entry.name))
        bird_accepts(render_bird(reflected, entry.name, export_kernel=True))


def test_a_lone_node_without_pod_cidrs_parses(make_node, plan, bird_accepts):
    topology = plan([make_node("only", "10.0.0.1")])
    config = render_bird(topology, "only")
    bird_accepts(config)
    assert "protocol bgp" not in config and "protocol static" not in config


def test_session_lines(dual_stack):
    config = render_bird(dual_stack, "node-a")
    assert "router id 10.0.0.11;" in config
    block = _protocol(config, "mesh_node_b_v4")
    assert "local 10.0.0.11 port 179 as 64512;" in block
    assert "neighbor 10.0.0.12 port 179 as 64512;" in block
    assert "passive on;" in block  # node-a has the lower address
    block = _protocol(config, "mesh_node_d_v6")
    assert "local fd00::11 port 179 as 64512;" in block
    assert "neighbor fd00::14 port 1179 as 64512;" in block
    assert "passive on;" in block
    assert "passive on" not in _protocol(render_bird(dual_stack, "node-d"), "mesh_node_a_v6")


def test_one_protocol_per_session_and_passive_ends_as_planned(dual_stack, reflected):
    for topology in (dual_stack, reflected):
        for entry in topology.nodes:
            config = render_bird(topology, entry.name)
            blocks = re.findall(r"^protocol bgp .*?^}", config, flags=re.MULTILINE | re.DOTALL)
            assert len(blocks) == len(entry.peers)
            assert sum("passive on;" in block for block in blocks) == sum(
                peer.passive for peer in entry.peers
            )


def test_announces_the_pod_cidrs_as_blackholes_and_filters_by_pool(dual_stack):
    config = render_bird(dual_stack, "node-a")
    assert "route 10.244.0.0/24 blackhole;" in config
    assert "route fd00:10:244::/64 blackhole;" in config
    assert _block(config, "filter netplan_import4") == (
        "filter netplan_import4 {\n"
        "  if net ~ [ 10.244.0.0/16+, 10.128.0.0/9+ ] then accept;\n"
        "  reject;\n"
        "}"
    )
    assert _block(config, "filter netplan_export4") == (
        "filter netplan_export4 {\n  if net ~ [ 10.244.0.0/24 ] then accept;\n  reject;\n}"
    )
    assert "if net ~ [ fd00:10:244::/56+ ] then accept;" in _block(config, "filter netplan_import6")
    assert "netplan_reflect" not in config


def test_no_kernel_protocol_unless_asked(dual_stack):
    assert "protocol kernel" not in render_bird(dual_stack, "node-a")
    config = render_bird(dual_stack, "node-a", export_kernel=True)
    assert (
        "protocol kernel netplan_kernel4" in config and "protocol kernel netplan_kernel6" in config
    )
    # a BGP route for the node's own CIDR must never replace the route to its pods
    assert _block(config, "filter netplan_install4").startswith(
        "filter netplan_install4 {\n  if net ~ [ 10.244.0.0/24 ] then reject;\n"
        "  if source = RTS_BGP && net ~ [ 10.244.0.0/16+, 10.128.0.0/9+ ] then accept;"
    )


def test_reflector_and_client(reflected):
    reflector = render_bird(reflected, "node-0000")
    template = _block(reflector, "template bgp netplan_rr_client4")
    assert "rr client;" in template and "rr cluster id 10.0.0.1;" in template
    assert "export filter netplan_reflect4;" in template
    assert "export filter netplan_reflect4;" in _block(reflector, "template bgp netplan_node4")
    assert (
        "if source = RTS_BGP && net ~ [ 10.244.0.0/16+, 10.128.0.0/9+ ] then accept;" in reflector
    )
    assert "protocol bgp rrmesh_node_0001_v4 from netplan_node4" in reflector
    assert "protocol bgp client_node_0005_v6 from netplan_rr_client6" in reflector
    client = render_bird(reflected, "node-0004")
    assert "rr client" not in client and "netplan_reflect" not in client
    assert "protocol bgp rr_node_0000_v4 from netplan_node4" in client


def test_a_shared_cluster_id(make_cluster, make_settings, plan):
    topology = plan(
        make_cluster(4),
        make_settings("route-reflector", names=["node-0001"], cluster_id="10.0.0.100"),
    )
    assert "rr cluster id 10.0.0.100;" in render_bird(topology, "node-0001")


def test_passwords_are_hidden_unless_shown(dual_stack):
    hidden = _protocol(render_bird(dual_stack, "node-c"), "peer_10_0_0_254")
    assert f'password "{HIDDEN_PASSWORD}";' in hidden
    assert "$TOR_PASSWORD" in hidden and "s3cr3t" not in hidden
    shown = _protocol(render_bird(dual_stack, "node-c", show_secrets=True), "peer_10_0_0_254")
    assert 'password "s3cr3t #;\'x";' in shown and "hidden" not in shown
    assert "password" not in _protocol(render_bird(dual_stack, "node-a"), "peer_fd00__254")


def test_a_password_the_planner_did_not_resolve_stays_hidden(
    make_node, make_settings, make_peer, plan
):
    topology = plan(
        [make_node("a", "10.0.0.1")],
        make_settings(peers=[make_peer("10.0.0.9", password_env="PW")]),
    )
    assert f'password "{HIDDEN_PASSWORD}";' in render_bird(topology, "a", show_secrets=True)


def test_external_sessions_export_only_the_nodes_cidrs(dual_stack):
    config = render_bird(dual_stack, "node-c")
    assert "protocol bgp peer_10_0_0_254 from netplan_external4" in config
    assert "neighbor 10.0.0.254 port 179 as 65001;" in config
    assert "export filter netplan_export4;" in _block(config, "template bgp netplan_external4")
    assert "neighbor fd00::254 port 1790 as 4200000000;" in render_bird(dual_stack, "node-d")


def test_protocol_names_are_valid_unique_symbols(make_node, plan, bird_accepts):
    long = "n" + "-x" * 120
    nodes = [
        make_node("node-a", "10.0.0.1"),
        make_node("9lives", "10.0.0.2"),
        make_node(long + "a", "10.0.0.3"),
        make_node(long + "b", "10.0.0.4"),
        make_node("a.b", "10.0.0.5"),
        make_node("a-b", "10.0.0.6"),
    ]
    topology = plan(nodes)
    config = render_bird(topology, "node-a")
    bird_accepts(config)
    names = re.findall(r"^protocol bgp (\S+)", config, flags=re.MULTILINE)
    assert len(names) == len(set(names)) == 5
    assert all(
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and len(name) <= SYMBOL_MAX for name in names
    )


def test_rendering_is_deterministic(dual_stack):
    assert render_bird(dual_stack, "node-a") == render_bird(dual_stack, "node-a")


def _block(config: str, opening: str) -> str:
    match = re.search(rf"^{re.escape(opening)} .*?^}}", config, flags=re.MULTILINE | re.DOTALL)
    assert match, f"no {opening!r} in\n{config}"
    return match.group(0)


def _protocol(config: str, name: str) -> str:
    return _block(config, f"protocol bgp {name}")
