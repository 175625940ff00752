"""netplan map (SVG, PNG) and netplan topology -o svg: pictures that parse and say the truth."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from cli_support import BASE_SPEC, assert_one_error_line, derive
from ipam.state import Snapshot
from planner.plan import build_plan
from planner.spec import parse_spec
from planner.svgmap import COLORS, COOLING, FREE, RESERVED, pool_pictures, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    assert float(root.get("width")) > 0 and float(root.get("height")) > 0
    return root


def titles(root: ET.Element) -> list[str]:
    return [t.text for t in root.iter(f"{SVG}title")]


def texts(root: ET.Element) -> str:
    return "\n".join(t.text or "" for t in root.iter(f"{SVG}text"))


def _released_store(netplan) -> tuple[Path, Path]:
    """BASE_SPEC allocated, node-b released and planned anew: one CIDR per pool cooling."""
    spec = netplan.spec(BASE_SPEC)
    store = netplan.cwd / "netplan.db"
    netplan.allocate(spec, store)
    r = netplan("release", "--cluster", "demo", "node-b", "--store", store)
    assert r.returncode == 0, r.describe()
    return spec, store


def test_svg_map_shows_every_state_with_counts_and_hover_titles(netplan):
    spec, store = _released_store(netplan)
    out = netplan.cwd / "map.svg"
    r = netplan("map", "-f", spec, "--store", store, "-o", "svg", "--out", out)
    assert r.returncode == 0 and r.stdout == "", r.describe()
    root = parse_svg(out.read_text())
    words = texts(root)
    # pods-v4 10.244.0.0/16 in /24s: 3 nodes, node-b anew on .3 with .1 cooling; one reserved
    assert "pods-v4  10.244.0.0/16" in words
    assert "256 node CIDRs of /24: 3 allocated · 1 reserved · 251 free · 1 released (cooling)" \
        in words
    assert "pods-v6  fd00:10:244::/56" in words
    assert "256 node CIDRs of /64: 3 allocated · 0 reserved · 252 free · 1 released (cooling)" \
        in words
    tips = titles(root)
    assert "10.244.0.0/24 node-a" in tips and "10.244.3.0/24 node-b" in tips
    assert "10.244.1.0/24: 1 released (cooling)" in tips
    assert "10.244.255.0/24: 1 reserved" in tips
    assert "fd00:10:244:3::/64 node-b" in tips
    fills = {rect.get("fill") for rect in root.iter(f"{SVG}rect")}
    assert {COLORS[s] for s in (FREE, COOLING, RESERVED)} <= fills
    assert "10.244.0.0/20" in words  # rows are labelled with the block they hold


def test_png_map(netplan, cairosvg):
    spec, store = _released_store(netplan)
    out = netplan.cwd / "map.png"
    r = netplan("map", "-f", spec, "--store", store, "-o", "png", "--out", out)
    assert r.returncode == 0, r.describe()
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 600 and height > 600


def test_png_without_cairosvg_says_what_to_install(netplan):
    # a cairosvg that cannot be imported, ahead of the real one
    shadow = netplan.cwd / "shadow" / "cairosvg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no cairosvg here')\n")
    spec = netplan.spec(BASE_SPEC)
    r = netplan("map", "-f", spec, "--store", "memory:", "-o", "png", "--out",
                netplan.cwd / "map.png", env={"PYTHONPATH": str(shadow.parent)})
    line = assert_one_error_line(r, 2)
    assert "pip install cairosvg" in line and "libcairo2" in line
    assert not (netplan.cwd / "map.png").exists()


def test_map_of_five_thousand_nodes_names_every_node():
    """One cell per /24 of a /10 (16,384 cells), each of the 5,000 nodes with its title."""
    nodes = [{"name": f"n{i:04d}", "address": f"10.1.{i // 250}.{i % 250 + 1}"}
             for i in range(5000)]
    spec = parse_spec({"cluster": "big", "bgp": {"topology": "none"}, "nodes": nodes,
                       "pools": [{"name": "pods-v4", "cidr": "10.128.0.0/10",
                                  "nodeMaskSize": 24}]})
    plan = build_plan(spec, Snapshot())
    svg = render_svg("big", pool_pictures(plan, ()))
    assert len(svg) < 2_000_000  # runs of free cells share one element
    root = parse_svg(svg)
    named = [t for t in titles(root) if t.split()[-1].startswith("n")]
    assert len(named) == 5000
    assert "10.128.0.0/24 n0000" in named and "10.147.135.0/24 n4999" in named
    assert "16,384 node CIDRs of /24: 5,000 allocated" in texts(root)


def test_huge_pools_draw_a_cell_per_block():
    """A /8 of /24s (65,536) draws 16,384 cells of four /24s, titled with their counts."""
    spec = parse_spec({"cluster": "wide", "bgp": {"topology": "none"},
                       "services": {"cidr": "172.16.0.0/12"},
                       "nodes": [{"name": f"n{i}", "address": f"192.168.0.{i + 1}"}
                                 for i in range(3)],
                       "pools": [{"name": "pods-v4", "cidr": "10.0.0.0/8",
                                  "nodeMaskSize": 24}]})
    root = parse_svg(render_svg("wide", pool_pictures(build_plan(spec, Snapshot()), ())))
    assert "a cell is 4 of them (a /22)" in texts(root)
    tips = titles(root)
    assert "10.0.0.0/22: 3 allocated, 1 free" in tips
    # the rest of the first row of 128 cells: 127 blocks, 508 /24s
    assert "10.0.4.0/22 … 10.1.252.0/22: 508 free" in tips


def test_topology_svg_through_graphviz(netplan, dot):
    spec = netplan.spec(BASE_SPEC)
    r = netplan("topology", "-f", spec, "-o", "svg")
    assert r.returncode == 0, r.describe()
    root = ET.fromstring(r.stdout)  # Graphviz's SVG, with its XML declaration and DOCTYPE
    assert root.tag == f"{SVG}svg"
    assert {"node-a", "node-b", "node-c"} <= set(titles(root))


def test_topology_svg_without_graphviz_says_what_to_install(netplan):
    spec = netplan.spec(derive())
    empty = netplan.cwd / "no-tools"
    empty.mkdir()
    r = netplan("topology", "-f", spec, "-o", "svg", env={"PATH": str(empty)})
    line = assert_one_error_line(r, 2)
    assert "apt-get install graphviz" in line
