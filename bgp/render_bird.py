"""A BIRD 2 configuration for one node of a planned Topology.

What the configuration does:
- announces the node's pod CIDRs, from a static protocol of blackhole routes (traffic to
  an unused address of the node's range is dropped on the node instead of looping back),
- imports only prefixes inside the cluster's pools, exports only the node's own CIDRs
  (reflectors also reflect what they learned over BGP inside the pools),
- one `protocol bgp` per session, each with `local ADDRESS port PORT`, so BIRD listens on
  the node's own address and port only (`strict bind`) and several speakers can share a
  machine; `passive on` on the end that waits,
- no `protocol kernel` (nothing touches the routing table) unless export_kernel: then BIRD
  learns the kernel's routes (to resolve next hops) and installs BGP routes inside the
  pools, never one for the node's own CIDRs.

MD5 passwords: unless show_secrets (and the planner resolved the password), the password is
HIDDEN_PASSWORD with a comment naming its environment variable: the file still parses, and
the session fails closed instead of running without authentication.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bgp.model import Network
from bgp.topology import EXTERNAL, HIDDEN_PASSWORD, RR_CLIENT, NodeSessions, Peer, Topology

SYMBOL_MAX = 64  # BIRD: "Symbol too long" past 64 characters
PROTOCOL_PREFIX = {
    "mesh": "mesh",
    "rr-mesh": "rrmesh",
    "reflector": "rr",
    "rr-client": "client",
    "external": "peer",
}


def render_bird(
    topology: Topology, node_name: str, *, show_secrets: bool = False, export_kernel: bool = False
) -> str:
    entry = topology.node(node_name)
    node = entry.node
    versions = sorted({peer.version for peer in entry.peers})  # the channels some session needs
    sections = [
        _header(topology, entry),
        f"router id {node.router_id};",
        "protocol device {\n}",
        # connected networks resolve the (recursive, iBGP) next hops of peers on the node's subnets
        _protocol_direct(sorted({address.version for address in node.addresses})),
        *(
            _protocol_static(version, _of(node.pod_cidrs, version))
            for version in (4, 6)
            if _of(node.pod_cidrs, version)
        ),
        *(_filters(topology, entry, version, export_kernel) for version in versions),
        *(_protocol_kernel(version) for version in versions if export_kernel),
        *_templates(entry, versions),
        *(
            _protocol_bgp(name, peer, entry, topology.as_number, show_secrets)
            for name, peer in zip(_protocol_names(entry.peers), entry.peers, strict=True)
        ),
    ]
    return "\n\n".join(sections) + "\n"


def _of(networks: Sequence[Network], version: int) -> list[Network]:
    return [network for network in networks if network.version == version]


def _header(topology: Topology, entry: NodeSessions) -> str:
    return (
        f"# netplan: BIRD 2 configuration of node {entry.name} in cluster {topology.cluster}.\n"
        f"# Topology {topology.topology}, AS {topology.as_number}, role {entry.role}, "
        f"{len(entry.peers)} sessions."
    )


def _channel(version: int) -> str:
    return f"ipv{version}"


def _protocol_direct(versions: list[int]) -> str:
    channels = "".join(f"  {_channel(version)};\n" for version in versions)
    return f"protocol direct netplan_direct {{\n{channels}}}"


def _protocol_static(version: int, cidrs: list[Network]) -> str:
    routes = "".join(f"  route {cidr} blackhole;\n" for cidr in cidrs)
    return f"protocol static netplan_pods{version} {{\n  {_channel(version)};\n{routes}}}"


def _prefix_set(networks: Sequence[Network], *, subnets: bool) -> str:
    plus = "+" if subnets else ""
    return "[ " + ", ".join(f"{network}{plus}" for network in networks) + " ]"


def _filter(name: str, rules: list[str]) -> str:
    body = "".join(f"  {rule}\n" for rule in rules)
    return f"filter {name} {{\n{body}  reject;\n}}"


def _filters(topology: Topology, entry: NodeSessions, version: int, export_kernel: bool) -> str:
    """Filters of one family: import, export, and as needed reflect and kernel."""
    pools = _of(topology.pod_prefixes, version)
    own = _of(entry.node.pod_cidrs, version)
    in_pools = f"net ~ {_prefix_set(pools, subnets=True)}" if pools else None
    is_own = f"net ~ {_prefix_set(own, subnets=False)}" if own else None
    reflected = f"source = RTS_BGP && {in_pools}" if in_pools else None

    filters = [
        _filter(f"netplan_import{version}", [f"if {in_pools} then accept;"] if in_pools else []),
        _filter(f"netplan_export{version}", [f"if {is_own} then accept;"] if is_own else []),
    ]
    if entry.role == "reflector":
        rules = [f"if {test} then accept;" for test in (is_own, reflected) if test]
        filters.append(_filter(f"netplan_reflect{version}", rules))
    if export_kernel:
        # a BGP route for the node's own CIDR would replace the route to its pods
        rules = [f"if {is_own} then reject;"] if is_own else []
        if reflected:
            rules.append(f"if {reflected} then accept;")
        filters.append(_filter(f"netplan_install{version}", rules))
    return "\n\n".join(filters)


def _protocol_kernel(version: int) -> str:
    return (
        f"protocol kernel netplan_kernel{version} {{\n"
        "  learn;  # the kernel's routes resolve the next hops of peers behind a router\n"
        f"  {_channel(version)} {{\n"
        "    import all;\n"
        f"    export filter netplan_install{version};\n"
        "  };\n"
        "}"
    )


def _template_name(peer: Peer) -> str:
    group = {EXTERNAL: "external", RR_CLIENT: "rr_client"}.get(peer.kind, "node")
    return f"netplan_{group}{peer.version}"


def _templates(entry: NodeSessions, versions: list[int]) -> list[str]:
    """One template per group of sessions (other nodes, rr clients, external) and family."""
    used = {_template_name(peer) for peer in entry.peers}
    templates = []
    for version in versions:
        # a reflector reflects to every node; a client exports its own CIDRs only
        node_export = (
            f"netplan_reflect{version}" if entry.role == "reflector" else f"netplan_export{version}"
        )
        groups = [
            (f"netplan_node{version}", [], node_export),
            (
                f"netplan_rr_client{version}",
                ["rr client;", f"rr cluster id {entry.cluster_id};"],
                node_export,
            ),
            (f"netplan_external{version}", [], f"netplan_export{version}"),
        ]
        for name, options, export in groups:
            if name in used:
                templates.append(_template(name, version, options, export))
    return templates


def _template(name: str, version: int, options: list[str], export: str) -> str:
    lines = [
        f"template bgp {name} {{",
        "  strict bind on;  # listen on the local address only, not on every address",
        "  connect retry time 5;  # BIRD's default, 120 s, is long when the other end starts late",
        *(f"  {option}" for option in options),
        f"  {_channel(version)} {{",
        f"    import filter netplan_import{version};",
        f"    export filter {export};",
        "  };",
        "}",
    ]
    return "\n".join(lines)


def _protocol_names(peers: Sequence[Peer]) -> list[str]:
    """Valid, unique BIRD symbols: kind, peer name or address, family."""
    names: list[str] = []
    used: set[str] = set()
    for peer in peers:
        name = candidate = _protocol_name(peer)
        suffix = 2
        while candidate in used:  # names that differ only in characters BIRD cannot take
            tail = f"_{suffix}"
            candidate = name[: SYMBOL_MAX - len(tail)] + tail
            suffix += 1
        used.add(candidate)
        names.append(candidate)
    return names


def _protocol_name(peer: Peer) -> str:
    stem = peer.name if peer.name is not None else str(peer.address)
    base = PROTOCOL_PREFIX[peer.kind] + "_" + re.sub(r"[^A-Za-z0-9]", "_", stem)
    # a pair of nodes may have a session per family, an external peer has one family
    family = f"_v{peer.version}" if peer.name is not None else ""
    return base[: SYMBOL_MAX - len(family)] + family


def _text(value: str) -> str:
    """A BIRD string: it has no escapes, so quotes and line breaks cannot appear in it."""
    return '"' + re.sub(r'["\n\r]', "_", value) + '"'


def _protocol_bgp(
    name: str, peer: Peer, entry: NodeSessions, as_number: int, show_secrets: bool
) -> str:
    lines = [
        f"protocol bgp {name} from {_template_name(peer)} {{",
        f"  description {_text(peer.description)};",
        f"  local {peer.local_address} port {entry.node.port} as {as_number};",
        f"  neighbor {peer.address} port {peer.port} as {peer.as_number};",
    ]
    if peer.passive:
        lines.append("  passive on;  # the lower address waits, the peer connects")
    password = peer.md5_password(show_secrets)
    if password is not None:
        if password == HIDDEN_PASSWORD:
            lines.append(f"  # password hidden: netplan reads it from ${peer.password_env};")
            lines.append("  # render with secrets shown to include it")
        lines.append(f"  password {_text(password)};")
    lines.append("}")
    return "\n".join(lines)
