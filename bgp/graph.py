"""Text renderings of a Topology as a graph: Graphviz DOT and Mermaid.

One edge per session (a dual-stack pair of nodes has two), external peers as nodes of
their own. Deterministic: nodes in topology order, external peers in first-seen order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bgp.model import Address
    from bgp.topology import Peer, Topology

# a session has one label whichever end names it
SESSION_LABELS = {
    "mesh": "mesh",
    "rr-mesh": "rr-mesh",
    "reflector": "rr",
    "rr-client": "rr",
    "external": "external",
}


def _sessions(topology: Topology) -> Iterator[tuple[int, Peer]]:
    """(node index, peer) once per session: a pair of nodes from its lower-index end."""
    index = {entry.node.name: i for i, entry in enumerate(topology.nodes)}
    for i, entry in enumerate(topology.nodes):
        for peer in entry.peers:
            if peer.name is None or index[peer.name] > i:
                yield i, peer


def _external_peers(topology: Topology) -> dict[Address, int]:
    """Each external peer's address and AS, numbered in first-seen order."""
    seen: dict[Address, int] = {}
    for entry in topology.nodes:
        for peer in entry.peers:
            if peer.name is None and peer.address not in seen:
                seen[peer.address] = peer.as_number
    return seen


def _label(peer: Peer) -> str:
    return f"ipv{peer.version} {SESSION_LABELS[peer.kind]}"


def _dot_id(text: str) -> str:
    """A quoted DOT string; a line break becomes DOT's own `\\n`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(topology: Topology) -> str:
    title = (
        f"{topology.cluster}: {topology.topology}, AS {topology.as_number}, "
        f"{topology.sessions} sessions"
    )
    lines = [
        f"graph {_dot_id(topology.cluster)} {{",
        f"  label={_dot_id(title)};",
        "  node [shape=ellipse];",
    ]
    for entry in topology.nodes:
        shape = ", shape=doublecircle" if entry.role == "reflector" else ""
        label = _dot_id(entry.name + "\n" + str(entry.node.address))
        lines.append(f"  {_dot_id(entry.name)} [label={label}{shape}];")
    for address, as_number in _external_peers(topology).items():
        label = _dot_id(f"{address}\nAS {as_number}")
        lines.append(f"  {_dot_id(str(address))} [label={label}, shape=box];")
    for i, peer in _sessions(topology):
        other = peer.name if peer.name is not None else str(peer.address)
        edge = f"{_dot_id(topology.nodes[i].name)} -- {_dot_id(other)}"
        lines.append(f"  {edge} [label={_dot_id(_label(peer))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def to_mermaid(topology: Topology) -> str:
    # Mermaid ids must be plain words: nodes are n<index>, external peers p<index>
    externals = {address: f"p{k}" for k, address in enumerate(_external_peers(topology))}
    lines = ["graph LR"]
    for i, entry in enumerate(topology.nodes):
        text = _mermaid_text(f"{entry.name}<br/>{entry.node.address}")
        # reflectors get the double-bordered (subroutine) shape
        lines.append(f"  n{i}[[{text}]]" if entry.role == "reflector" else f"  n{i}[{text}]")
    for address, as_number in _external_peers(topology).items():
        # {{...}}: the hexagon shape
        lines.append(
            "  " + externals[address] + "{{" + _mermaid_text(f"{address}<br/>AS {as_number}") + "}}"
        )
    index = {entry.node.name: i for i, entry in enumerate(topology.nodes)}
    for i, peer in _sessions(topology):
        other = f"n{index[peer.name]}" if peer.name is not None else externals[peer.address]
        lines.append(f"  n{i} ---|{_label(peer)}| {other}")
    return "\n".join(lines) + "\n"
