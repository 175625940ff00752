"""render_exabgp: every configuration passes `exabgp validate`, and says what it should."""

from __future__ import annotations

import base64
import re
import sys

import pytest

from bgp.render_exabgp import PROCESS_NAME, render_exabgp
from bgp.topology import HIDDEN_PASSWORD


@pytest.fixture
def dual_stack(make_node, make_settings, make_peer, plan):
    nodes = [
        make_node(
            "node-a", "10.0.0.11", "fd00::11", pod_cidrs=["10.244.0.0/24", "fd00:10:244::/64"]
        ),
        make_node("node-b", "10.0.0.12", "fd00::12", pod_cidrs=["10.244.1.0/24"], port=1179),
        make_node("node-c", "10.0.0.13", pod_cidrs=["10.244.2.0/24"], labels={"rack": "r1"}),
        make_node("node-d", "fd00::14", router_id="10.0.0.14", pod_cidrs=["fd00:10:244:3::/64"]),
    ]
    peers = [
        make_peer(
            "10.0.0.254",
            as_number=65001,
            selector={"rack": "r1"},
            password_env="TOR_PASSWORD",
            password="s3cr3t#;'x y\\",
        ),
        make_peer("fd00::254", as_number=4200000000, port=1790),
    ]
    return plan(nodes, make_settings(peers=peers))


@pytest.fixture
def reflected(make_cluster, make_settings, plan):
    return plan(make_cluster(5), make_settings("route-reflector", names=["node-0000", "node-0001"]))


API = (sys.executable, "-m", "bgp.agent", "--node", "node a")


def test_every_node_validates(dual_stack, reflected, exabgp_accepts):
    configs = [
        render_exabgp(topology, entry.name, **options)
        for topology in (dual_stack, reflected)
        for entry in topology.nodes
        for options in ({}, {"show_secrets": True, "process": API})
    ]
    for config in configs:
        exabgp_accepts(config)


def test_neighbor_lines(dual_stack):
    config = render_exabgp(dual_stack, "node-a")
    block = _neighbor(config, "10.0.0.12")
    for line in [
        'description "node-b (mesh)";',
        "router-id 10.0.0.11;",
        "local-address 10.0.0.11;",
        "local-as 64512;",
        "peer-as 64512;",
        "listen 179;",
        "connect 1179;",
        "passive true;",
        "ipv4 unicast;",
        "route 10.244.0.0/24 next-hop self;",
    ]:
        assert line in block
    assert "fd00" not in block
    block = _neighbor(config, "fd00::12")
    assert "router-id 10.0.0.11;" in block and "local-address fd00::11;" in block
    assert "ipv6 unicast;" in block and "route fd00:10:244::/64 next-hop self;" in block
    assert "passive" not in _neighbor(render_exabgp(dual_stack, "node-b"), "10.0.0.11")


def test_one_neighbor_per_session(dual_stack, reflected):
    for topology in (dual_stack, reflected):
        for entry in topology.nodes:
            config = render_exabgp(topology, entry.name)
            assert len(re.findall(r"^neighbor ", config, flags=re.MULTILINE)) == len(entry.peers)
            assert config.count("passive true;") == sum(peer.passive for peer in entry.peers)


def test_with_a_process_the_process_announces(dual_stack):
    config = render_exabgp(dual_stack, "node-a", process=API)
    assert (
        f"process {PROCESS_NAME} {{\n"
        f'  run {sys.executable} -m bgp.agent --node "node a";\n'
        "  encoder json;\n"
        "}" in config
    )
    block = _neighbor(config, "10.0.0.12")
    assert "static" not in block and "route " not in block
    assert "processes [ netplan ];" in block and "neighbor-changes;" in block
    assert "receive {\n      parsed;\n      update;\n    }" in block


def test_passwords_are_base64_and_hidden_unless_shown(dual_stack):
    hidden = _neighbor(render_exabgp(dual_stack, "node-c"), "10.0.0.254")
    assert f"md5-password {base64.b64encode(HIDDEN_PASSWORD.encode()).decode()};" in hidden
    assert "md5-base64 true;" in hidden and "$TOR_PASSWORD" in hidden
    shown = _neighbor(render_exabgp(dual_stack, "node-c", show_secrets=True), "10.0.0.254")
    (encoded,) = re.findall(r"md5-password (\S+);", shown)
    assert base64.b64decode(encoded).decode() == dual_stack.nodes[2].peers[-1].password
    assert "md5" not in _neighbor(render_exabgp(dual_stack, "node-a"), "fd00::254")


def test_external_peer_ports_and_as(dual_stack):
    block = _neighbor(render_exabgp(dual_stack, "node-d"), "fd00::254")
    assert "peer-as 4200000000;" in block and "connect 1790;" in block and "listen 179;" in block
    assert "passive" not in block


def test_a_process_argument_with_a_quote_is_refused(dual_stack):
    with pytest.raises(ValueError, match="quote"):
        render_exabgp(dual_stack, "node-a", process=("/bin/echo", "it's"))


def test_backslashes_in_process_arguments_survive(dual_stack):
    assert 'run /bin/echo "a\\\\b c";' in render_exabgp(
        dual_stack, "node-a", process=("/bin/echo", "a\\b c")
    )


def _neighbor(config: str, address: str) -> str:
    match = re.search(
        rf"^neighbor {re.escape(address)} {{.*?^}}", config, flags=re.MULTILINE | re.DOTALL
    )
    assert match, f"no neighbor {address} in\n{config}"
    return match.group(0)
