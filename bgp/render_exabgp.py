"""An ExaBGP 5 configuration for one node of a planned Topology.

Ports: every neighbor carries `listen <node port>` and `connect <peer port>`. With
`listen`, ExaBGP binds the neighbor's local-address on that port itself (one socket per
address and port, shared by the neighbors), so the speaker needs no exabgp.tcp.bind. With
`connect`, ExaBGP connects to the peer's port; without it ExaBGP would connect to
exabgp.tcp.port (its *listening* port) or 179. Leave exabgp.tcp.bind empty (the default)
and exabgp.tcp.port unset.

The environment ExaBGP needs (DESIGN section 8): exabgp.api.cli=false, and when run as
root exabgp.daemon.user=root (or exabgp.daemon.drop=false), or it drops to `nobody` and
cannot start the API process from a virtual environment.

Announcements: with `process`, the API process owns them (it announces the node's CIDRs
from the store and withdraws those that leave it), so the configuration announces nothing.
Without one, each neighbor announces the node's CIDRs of its family with next hop self.
ExaBGP does not reflect routes: reflector nodes run BIRD from `netplan render bird`
(bgp/speaker.py says why); the speaker's agent receives updates (`receive { parsed;
update; }`) only to learn routes.

MD5 passwords are written base64-encoded (`md5-base64 true`): ExaBGP's parser has no way
to quote a quote character, base64 has none. Unless show_secrets (and the planner resolved
the password), the password is HIDDEN_PASSWORD: the file still parses, and the session
fails closed instead of running without authentication.
"""

from __future__ import annotations

import base64
import re

from bgp.topology import HIDDEN_PASSWORD, NodeSessions, Peer, Topology

PROCESS_NAME = "netplan"


def render_exabgp(
    topology: Topology,
    node_name: str,
    *,
    show_secrets: bool = False,
    process: tuple[str, ...] | None = None,
) -> str:
    """ExaBGP configuration of a node; `process` is the API process's command line."""
    entry = topology.node(node_name)
    sections = [_header(topology, entry)]
    if process is not None:
        sections.append(_process(process))
    sections.extend(
        _neighbor(peer, entry, topology.as_number, show_secrets, with_api=process is not None)
        for peer in entry.peers
    )
    return "\n\n".join(sections) + "\n"


def _header(topology: Topology, entry: NodeSessions) -> str:
    return (
        f"# netplan: ExaBGP 5 configuration of node {entry.name} in cluster {topology.cluster}.\n"
        f"# Topology {topology.topology}, AS {topology.as_number}, role {entry.role}, "
        f"{len(entry.peers)} sessions.\n"
        "# Run with exabgp.api.cli=false, and as root with exabgp.daemon.user=root;\n"
        "# leave exabgp.tcp.bind and exabgp.tcp.port unset: each neighbor has its own\n"
        "# listen and connect ports."
    )


def _word(text: str) -> str:
    """One token for ExaBGP's tokeniser.

    It reads backslash escapes on the whole line (so a backslash is doubled), and inside a
    quoted string a quote of the other kind switches the quoting: no quote can be written.
    """
    if "'" in text or '"' in text:
        raise ValueError(f"ExaBGP's configuration cannot hold a quote character: {text!r}")
    escaped = text.replace("\\", "\\\\")
    return escaped if re.fullmatch(r"[\w./:=@%+-]+", escaped) else f'"{escaped}"'


def _process(command: tuple[str, ...]) -> str:
    if not command:
        raise ValueError("the API process needs a command")
    run = " ".join(_word(arg) for arg in command)
    return f"process {PROCESS_NAME} {{\n  run {run};\n  encoder json;\n}}"


def _description(text: str) -> str:
    return '"' + re.sub(r"[\"'\\\n\r]", "_", text) + '"'


def _neighbor(
    peer: Peer, entry: NodeSessions, as_number: int, show_secrets: bool, *, with_api: bool
) -> str:
    family = f"ipv{peer.version}"
    lines = [
        f"neighbor {peer.address} {{",
        f"  description {_description(peer.description)};",
        f"  router-id {entry.node.router_id};",
        f"  local-address {peer.local_address};",
        f"  local-as {as_number};",
        f"  peer-as {peer.as_number};",
        f"  listen {entry.node.port};",
        f"  connect {peer.port};",
    ]
    if peer.passive:
        lines.append("  passive true;  # the lower address waits, the peer connects")
    lines.extend(_md5(peer, show_secrets))
    lines.extend(["  family {", f"    {family} unicast;", "  }"])
    if with_api:
        lines.extend(
            [
                "  api {",
                f"    processes [ {PROCESS_NAME} ];",
                "    neighbor-changes;",
                "    receive {",
                "      parsed;",
                "      update;",
                "    }",
                "  }",
            ]
        )
    else:
        cidrs = [cidr for cidr in entry.node.pod_cidrs if cidr.version == peer.version]
        if cidrs:
            lines.extend(
                ["  static {", *(f"    route {cidr} next-hop self;" for cidr in cidrs), "  }"]
            )
    lines.append("}")
    return "\n".join(lines)


def _md5(peer: Peer, show_secrets: bool) -> list[str]:
    password = peer.md5_password(show_secrets)
    if password is None:
        return []
    encoded = base64.b64encode(password.encode()).decode()
    lines = [f"  md5-password {encoded};  # base64", "  md5-base64 true;"]
    if password == HIDDEN_PASSWORD:
        note = (
            f"netplan reads it from ${peer.password_env}; render with secrets shown to include it"
        )
        lines.insert(0, f"  # password hidden: {note}")
    return lines
