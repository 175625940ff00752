"""BGP: topology planning and per-node configuration rendering (pure), and the speaker.

The planner translates the parsed spec into the input types of bgp.model, calls
plan_topology, and renders a node's configuration from the resulting Topology.
"""

from bgp.errors import TopologyError
from bgp.model import BgpSettings, ExternalPeer, Node
from bgp.render_bird import render_bird
from bgp.render_exabgp import render_exabgp
from bgp.topology import NodeSessions, Peer, Topology, plan_topology

__all__ = [
    "BgpSettings",
    "ExternalPeer",
    "Node",
    "NodeSessions",
    "Peer",
    "Topology",
    "TopologyError",
    "plan_topology",
    "render_bird",
    "render_exabgp",
]
