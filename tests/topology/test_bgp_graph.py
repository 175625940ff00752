"""to_dot and to_mermaid: one edge per session, external peers as nodes of their own."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def topology(make_node, make_settings, make_peer, plan):
    nodes = [
        make_node("node-a", "10.0.0.1", "fd00::1"),
        make_node("node-b", "10.0.0.2", "fd00::2"),
        make_node("node-c", "10.0.0.3"),
    ]
    peers = [make_peer("10.0.9.1", as_number=65001), make_peer("fd00::9:1", as_number=65002)]
    return plan(nodes, make_settings("route-reflector", names=["node-a"], peers=peers))


def test_dot(topology):
    dot = topology.to_dot()
    assert dot.startswith('graph "demo" {\n')
    assert dot.endswith("}\n")
    edges = re.findall(r"^  (\S+) -- (\S+) \[label=(.*)\];$", dot, flags=re.MULTILINE)
    assert len(edges) == topology.sessions == 2 + 1 + 3 + 2
    assert ('"node-a"', '"node-b"', '"ipv6 rr"') in edges
    assert ('"node-c"', '"10.0.9.1"', '"ipv4 external"') in edges
    assert '"node-a" [label="node-a\\n10.0.0.1", shape=doublecircle];' in dot
    assert '"fd00::9:1" [label="fd00::9:1\\nAS 65002", shape=box];' in dot


def test_mermaid(topology):
    mermaid = topology.to_mermaid()
    assert mermaid.startswith("graph LR\n")
    edges = re.findall(r"^  (\w+) ---\|([^|]+)\| (\w+)$", mermaid, flags=re.MULTILINE)
    assert len(edges) == topology.sessions
    assert ("n0", "ipv4 rr", "n2") in edges
    assert ("n1", "ipv6 external", "p1") in edges
    assert '  n0[["node-a<br/>10.0.0.1"]]' in mermaid
    assert '  n1["node-b<br/>10.0.0.2"]' in mermaid
    assert '  p0{{"10.0.9.1<br/>AS 65001"}}' in mermaid


def test_full_mesh_edges_are_each_session_once(make_cluster, plan):
    topology = plan(make_cluster(20))
    assert topology.to_dot().count(" -- ") == topology.sessions == 2 * 190
    assert topology.to_mermaid().count(" ---|") == topology.sessions
    assert topology.to_dot() == plan(make_cluster(20)).to_dot()
