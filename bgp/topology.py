"""BGP topology planning: which node holds a session with which, and how.

`plan_topology` is pure and deterministic: the same input gives the same Topology, in the
same order (nodes in input order, each node's peers in node order then external peers in
spec order, IPv4 before IPv6 within a pair).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from itertools import combinations

from bgp import graph
from bgp.errors import TopologyError
from bgp.model import TOPOLOGIES, Address, BgpSettings, ExternalPeer, Network, Node

MESH_LIMIT = 50  # auto: a full mesh up to this many nodes, route reflectors above
LARGE_MESH = 100  # a full mesh past this many nodes draws a warning
RACK_LABEL = "rack"
REFLECTORS_PER_RACK = 2
REFLECTORS_WITHOUT_RACKS = 3
MD5_KEY_MAX_BYTES = 80  # TCP_MD5SIG_MAXKEYLEN in Linux
LISTED_NAMES = 10  # names a warning lists before it says "and N more"
# What a rendered configuration carries instead of a password it must not show (or does
# not know): it still parses, and a session with it fails closed instead of running
# without authentication.
HIDDEN_PASSWORD = "netplan-hidden"

# kind: the session as one end sees it (DESIGN section 5)
MESH = "mesh"  # full mesh, both ends
REFLECTOR = "reflector"  # a client's session to its reflector
RR_CLIENT = "rr-client"  # a reflector's session to a client
RR_MESH = "rr-mesh"  # between reflectors, both ends
EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class Peer:
    """One end's view of one BGP session: whom it talks to, and how."""

    name: str | None  # the peer node's name; None for an external peer
    address: Address
    port: int  # where the peer listens
    as_number: int
    kind: str
    passive: bool  # this end waits for the peer to connect
    rr_client: bool  # this end reflects routes to the peer
    local_address: Address  # this end's address, of the peer's family
    password_env: str | None = None
    password: str | None = None

    @property
    def version(self) -> int:
        return self.address.version

    @property
    def description(self) -> str:
        """How a configuration describes the session: the peer and the kind of session."""
        if self.name is None:
            return f"external peer AS {self.as_number}"
        return f"{self.name} ({self.kind})"

    def md5_password(self, show_secrets: bool) -> str | None:
        """The MD5 password a configuration carries for this session, None for none.

        The real one only when secrets are shown and the planner resolved it; else
        HIDDEN_PASSWORD.
        """
        if self.password_env is None and self.password is None:
            return None
        if show_secrets and self.password is not None:
            return self.password
        return HIDDEN_PASSWORD

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": str(self.address),
            "port": self.port,
            "asNumber": self.as_number,
            "kind": self.kind,
            "passive": self.passive,
            "rrClient": self.rr_client,
        }


@dataclass(frozen=True, slots=True)
class NodeSessions:
    """A node, its role and all of its sessions."""

    node: Node
    role: str  # "client" or "reflector"
    cluster_id: IPv4Address | None  # reflectors only
    peers: tuple[Peer, ...]

    @property
    def name(self) -> str:
        return self.node.name

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.node.name,
            "address": str(self.node.address),
            "role": self.role,
            "peers": [peer.to_dict() for peer in self.peers],
        }


@dataclass(frozen=True, slots=True)
class Topology:
    cluster: str
    as_number: int
    topology: str  # what was planned: full-mesh, route-reflector or none
    requested: str  # what the spec asked for (auto resolves to one of the above)
    nodes: tuple[NodeSessions, ...]
    sessions: int  # a pair of nodes once per family, each external session once
    pod_prefixes: tuple[Network, ...]  # the cluster's pools: what BIRD may import
    explanation: str
    warnings: tuple[str, ...]

    def node(self, name: str) -> NodeSessions:
        for entry in self.nodes:
            if entry.node.name == name:
                return entry
        raise TopologyError("--node", name, "is not a node of the spec")

    def to_dict(self) -> dict[str, object]:
        """The `topology -o json` object (DESIGN section 5) plus warnings and explanation."""
        return {
            "cluster": self.cluster,
            "asNumber": self.as_number,
            "topology": self.topology,
            "nodes": [entry.to_dict() for entry in self.nodes],
            "sessions": self.sessions,
            "warnings": list(self.warnings),
            "explanation": self.explanation,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_dot(self) -> str:
        return graph.to_dot(self)

    def to_mermaid(self) -> str:
        return graph.to_mermaid(self)


def plan_topology(
    cluster: str,
    nodes: Sequence[Node],
    bgp: BgpSettings,
    pod_prefixes: Sequence[Network],
) -> Topology:
    """Plan every BGP session of a cluster.

    Raises TopologyError for input only planning can judge: reflector names that are no
    node, a reflector selector that matches nothing, unusable external peers.
    """
    nodes = tuple(nodes)
    _check_external_peers(nodes, bgp.peers)
    named = _spec_reflectors(nodes, bgp)
    choice = _resolve(nodes, bgp, named)

    ends: list[list[Peer]] = [[] for _ in nodes]
    node_sessions = _connect_nodes(nodes, bgp.as_number, _pairs(nodes, choice), ends)
    external_sessions = _connect_external(nodes, bgp.peers, ends)

    reflector_set = set(choice.reflectors)
    planned = tuple(
        NodeSessions(
            node=node,
            role="reflector" if i in reflector_set else "client",
            cluster_id=(bgp.cluster_id or node.router_id) if i in reflector_set else None,
            peers=tuple(ends[i]),
        )
        for i, node in enumerate(nodes)
    )
    warnings = _warnings(planned, choice.mode, bgp, node_sessions)
    return Topology(
        cluster=cluster,
        as_number=bgp.as_number,
        topology=choice.mode,
        requested=bgp.topology,
        nodes=planned,
        sessions=node_sessions + external_sessions,
        pod_prefixes=tuple(pod_prefixes),
        explanation=choice.explanation,
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True)
class Summary:
    """What `netplan plan` says of the BGP topology: the mode and how many sessions."""

    topology: str
    sessions: int
    explanation: str
    warnings: tuple[str, ...]


def summarize(cluster: str, nodes: Sequence[Node], bgp: BgpSettings) -> Summary:
    """The topology's mode and session count, without building every session.

    A full mesh of n nodes has n(n-1)/2 sessions a family: 12.5 million at 5,000 nodes,
    too many objects to build just to count them; it is counted instead. Other
    topologies grow with the nodes and are planned in full.
    """
    nodes = tuple(nodes)
    _check_external_peers(nodes, bgp.peers)
    choice = _resolve(nodes, bgp, _spec_reflectors(nodes, bgp))
    if choice.mode != "full-mesh" or len(nodes) <= LARGE_MESH:
        t = plan_topology(cluster, nodes, bgp, ())
        return Summary(t.topology, t.sessions, t.explanation, t.warnings)
    per_family = [sum(1 for node in nodes if node.address_of(v)) for v in (4, 6)]
    mesh = sum(k * (k - 1) // 2 for k in per_family)
    external = sum(
        1
        for peer in bgp.peers
        for node in nodes
        if node.address_of(peer.address.version) and node.matches(peer.node_selector)
    )
    return Summary(choice.mode, mesh + external, choice.explanation,
                   (_large_mesh_warning(len(nodes), mesh),))


def _large_mesh_warning(n: int, node_sessions: int) -> str:
    return (
        f"full mesh of {n} nodes: {node_sessions} sessions between nodes, {n - 1} per node; "
        "route reflectors scale better (bgp.topology: route-reflector or auto)"
    )


def _check_external_peers(nodes: tuple[Node, ...], peers: tuple[ExternalPeer, ...]) -> None:
    """Each external peer needs its own address, and a password both BIRD and the kernel take."""
    taken = {
        address: f"the address of node {node.name}" for node in nodes for address in node.addresses
    }
    for i, peer in enumerate(peers):
        if peer.address in taken:
            raise TopologyError(
                f"bgp.peers[{i}].address", str(peer.address), f"is also {taken[peer.address]}"
            )
        taken[peer.address] = f"bgp.peers[{i}].address"
        if peer.password is not None:
            _check_password(f"bgp.peers[{i}].passwordEnv", peer.password_env, peer.password)


def _check_password(field: str, env: str | None, password: str) -> None:
    size = len(password.encode())
    if size == 0:
        raise TopologyError(field, env, "holds an empty password")
    if size > MD5_KEY_MAX_BYTES:
        raise TopologyError(
            field, env, f"holds a password of {size} bytes; TCP MD5 keys are at most 80"
        )
    # BIRD's strings have no escapes: a double quote or a line break cannot be written
    if any(c in password for c in '"\n\r\0'):
        raise TopologyError(
            field,
            env,
            "holds a password with a double quote or a line break, which BIRD cannot read",
        )


def _spec_reflectors(nodes: tuple[Node, ...], bgp: BgpSettings) -> list[int]:
    """Indices of the nodes the spec names as reflectors: names and selector, a union."""
    index = {node.name: i for i, node in enumerate(nodes)}
    chosen = set()
    for name in bgp.reflector_names:
        if name not in index:
            raise TopologyError("bgp.routeReflectors.names", name, "is not a node of the spec")
        chosen.add(index[name])
    if bgp.reflector_selector:
        matched = {i for i, node in enumerate(nodes) if node.matches(bgp.reflector_selector)}
        if not matched:
            raise TopologyError(
                "bgp.routeReflectors.selector", bgp.reflector_selector, "matches no node"
            )
        chosen |= matched
    return sorted(chosen)


@dataclass(frozen=True, slots=True)
class _Choice:
    """The topology planned for the spec's request."""

    mode: str  # full-mesh, route-reflector or none
    reflectors: tuple[int, ...]  # node indices, ascending
    by_rack: bool  # reflectors chosen per rack serve their own rack's clients
    explanation: str


def _resolve(nodes: tuple[Node, ...], bgp: BgpSettings, named: list[int]) -> _Choice:
    """What to plan for the topology the spec asks for; auto decides by the node count."""
    n = len(nodes)
    if bgp.topology not in TOPOLOGIES:
        raise TopologyError("bgp.topology", bgp.topology, f"is not one of {', '.join(TOPOLOGIES)}")
    if bgp.topology == "full-mesh":
        why = f"full-mesh as the spec asks: {n} nodes, each peering with every other"
        return _Choice("full-mesh", (), False, why)
    if bgp.topology == "none":
        why = "none as the spec asks: no sessions between nodes, only to external peers"
        return _Choice("none", (), False, why)
    if bgp.topology == "route-reflector":
        if not named:
            raise TopologyError(
                "bgp.topology", bgp.topology, "needs bgp.routeReflectors names or a selector"
            )
        why = f"route-reflector as the spec asks: reflectors {_names(nodes, named)}"
        return _Choice("route-reflector", tuple(named), False, why)
    if n <= MESH_LIMIT:
        return _Choice("full-mesh", (), False, f"auto: {n} nodes, at most {MESH_LIMIT}: full-mesh")
    above = f"auto: {n} nodes, more than {MESH_LIMIT}: route reflectors"
    if named:
        why = f"{above} from bgp.routeReflectors: {_names(nodes, named)}"
        return _Choice("route-reflector", tuple(named), False, why)
    return _choose_reflectors(nodes, above)


def _choose_reflectors(nodes: tuple[Node, ...], above: str) -> _Choice:
    """Reflectors for auto: two per rack where nodes carry a rack label, else three.

    Within a rack (or the cluster) the nodes with the most address families come first,
    so that reflectors can serve every client's families, then the lowest names. A rack's
    reflectors serve the clients of that rack (a client without a rack label: all of
    them), so sessions grow with the nodes, not with nodes times racks.
    """

    def preference(i: int) -> tuple[int, str]:
        return (-len(nodes[i].addresses), nodes[i].name)

    racks: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        rack = node.label(RACK_LABEL)
        if rack is not None:
            racks.setdefault(rack, []).append(i)
    order = "most address families, then lowest names"
    if racks:
        per_rack = {
            rack: sorted(racks[rack], key=preference)[:REFLECTORS_PER_RACK]
            for rack in sorted(racks)
        }
        chosen = tuple(sorted(i for members in per_rack.values() for i in members))
        listing = "; ".join(f"{rack}: {_names(nodes, r)}" for rack, r in per_rack.items())
        how = (
            f"{REFLECTORS_PER_RACK} per {RACK_LABEL} label value ({order}), "
            f"serving their {RACK_LABEL}'s nodes"
        )
        return _Choice("route-reflector", chosen, True, f"{above}, {how}: {listing}")
    chosen = tuple(sorted(sorted(range(len(nodes)), key=preference)[:REFLECTORS_WITHOUT_RACKS]))
    how = f"{REFLECTORS_WITHOUT_RACKS} chosen, no node has a {RACK_LABEL} label ({order})"
    return _Choice("route-reflector", chosen, False, f"{above}, {how}: {_names(nodes, chosen)}")


def _pairs(nodes: tuple[Node, ...], choice: _Choice) -> Iterable[tuple[int, int, str, str]]:
    """(i, j, kind at i, kind at j) for every pair of nodes i < j that peer.

    Ordered by (i, j), which leaves every node's peers in node order.
    """
    n = len(nodes)
    if choice.mode == "full-mesh":
        return ((i, j, MESH, MESH) for i in range(n) for j in range(i + 1, n))
    if choice.mode == "none":
        return ()
    reflectors = set(choice.reflectors)
    pairs = list(combinations(choice.reflectors, 2))
    for client, served_by in enumerate(_served_by(nodes, choice)):
        if client not in reflectors:
            pairs.extend((min(client, r), max(client, r)) for r in served_by)
    pairs.sort()
    kinds = {
        (True, True): (RR_MESH, RR_MESH),
        (True, False): (RR_CLIENT, REFLECTOR),
        (False, True): (REFLECTOR, RR_CLIENT),
    }
    return ((i, j, *kinds[(i in reflectors, j in reflectors)]) for i, j in pairs)


def _served_by(nodes: tuple[Node, ...], choice: _Choice) -> list[tuple[int, ...]]:
    """For every node, the reflectors it is a client of."""
    if not choice.by_rack:
        return [choice.reflectors] * len(nodes)
    per_rack: dict[str | None, tuple[int, ...]] = {}
    for r in choice.reflectors:
        rack = nodes[r].label(RACK_LABEL)
        per_rack[rack] = (*per_rack.get(rack, ()), r)
    return [per_rack.get(node.label(RACK_LABEL), choice.reflectors) for node in nodes]


def _connect_nodes(
    nodes: tuple[Node, ...],
    as_number: int,
    pairs: Iterable[tuple[int, int, str, str]],
    ends: list[list[Peer]],
) -> int:
    """Add both ends of one session per family the two nodes share; return the session count."""
    by_version = [{address.version: address for address in node.addresses} for node in nodes]
    sessions = 0
    for i, j, kind_i, kind_j in pairs:
        for version in (4, 6):
            a, b = by_version[i].get(version), by_version[j].get(version)
            if a is None or b is None:
                continue
            # of the two ends, the numerically lower address waits (DESIGN section 5)
            ends[i].append(_node_peer(nodes[j], b, a, as_number, kind_i, passive=a < b))
            ends[j].append(_node_peer(nodes[i], a, b, as_number, kind_j, passive=b < a))
            sessions += 1
    return sessions


def _node_peer(
    peer: Node, address: Address, local: Address, as_number: int, kind: str, *, passive: bool
) -> Peer:
    return Peer(
        name=peer.name,
        address=address,
        port=peer.port,
        as_number=as_number,
        kind=kind,
        passive=passive,
        rr_client=kind == RR_CLIENT,
        local_address=local,
    )


def _connect_external(
    nodes: tuple[Node, ...], peers: tuple[ExternalPeer, ...], ends: list[list[Peer]]
) -> int:
    """A session from every selected node that has an address of the peer's family."""
    sessions = 0
    for peer in peers:
        for i, node in enumerate(nodes):
            local = node.address_of(peer.address.version)
            if local is None or not node.matches(peer.node_selector):
                continue
            ends[i].append(
                Peer(
                    name=None,
                    address=peer.address,
                    port=peer.port,
                    as_number=peer.as_number,
                    kind=EXTERNAL,
                    passive=False,  # an external speaker may not accept being waited for
                    rr_client=False,
                    local_address=local,
                    password_env=peer.password_env,
                    password=peer.password,
                )
            )
            sessions += 1
    return sessions


def _warnings(
    planned: tuple[NodeSessions, ...], mode: str, bgp: BgpSettings, node_sessions: int
) -> list[str]:
    warnings = []
    n = len(planned)
    if mode == "full-mesh" and n > LARGE_MESH:
        warnings.append(_large_mesh_warning(n, node_sessions))
    if mode == "route-reflector":
        warnings.extend(
            _reflector_warnings([entry.node for entry in planned if entry.role == "reflector"])
        )
    if mode != "none" and n > 1:
        lonely = [
            entry.name
            for entry in planned
            if not any(peer.name is not None for peer in entry.peers)
        ]
        if lonely:
            others = "any reflector" if mode == "route-reflector" else "any other node"
            warnings.append(
                f"{_count(lonely, 'node')} no session to another node, sharing no address family "
                f"with {others}: {_listing(lonely)}"
            )
    if bgp.peers:
        uncovered = [
            entry.name
            for entry in planned
            if not any(peer.kind == EXTERNAL for peer in entry.peers)
        ]
        if uncovered:
            warnings.append(
                f"{_count(uncovered, 'node')} no session to any external peer (no bgp.peers "
                f"nodeSelector matches, or no peer of the node's address family): "
                f"{_listing(uncovered)}"
            )
    elif mode == "none":
        warnings.append("topology none and no bgp.peers: no node has a BGP session")
    warnings.extend(_unannounced(planned))
    return warnings


def _reflector_warnings(reflectors: list[Node]) -> list[str]:
    if len(reflectors) == 1:
        single = f"a single route reflector ({reflectors[0].name})"
        return [f"{single}: no redundancy, its clients lose every route when it fails"]
    racks = {node.label(RACK_LABEL) for node in reflectors}
    if len(racks) == 1 and None not in racks:
        where = f"{RACK_LABEL} {racks.pop()}"
        return [
            f"all route reflectors are in {where}: a failure of that rack takes every one of them"
        ]
    return []


def _unannounced(planned: tuple[NodeSessions, ...]) -> list[str]:
    """A pod CIDR travels only on sessions of its family: none without a node address of it."""
    warnings = []
    for version in (4, 6):
        names = [
            entry.name
            for entry in planned
            if entry.node.address_of(version) is None
            and any(c.version == version for c in entry.node.pod_cidrs)
        ]
        if names:
            warnings.append(
                f"{_count(names, 'node')} IPv{version} pod CIDRs but no IPv{version} address, "
                f"so no session announces them: {_listing(names)}"
            )
    return warnings


def _count(names: list[str], noun: str) -> str:
    return f"1 {noun} has" if len(names) == 1 else f"{len(names)} {noun}s have"


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_NAMES])
    return shown if len(names) <= LISTED_NAMES else f"{shown} and {len(names) - LISTED_NAMES} more"


def _names(nodes: tuple[Node, ...], indices: Sequence[int]) -> str:
    return _listing([nodes[i].name for i in indices])
