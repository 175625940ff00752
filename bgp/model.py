"""The input of BGP topology planning.

The planner validates the spec and translates it into these types; nothing here parses
YAML or reads the environment. Addresses are `ipaddress` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
# Sorted (key, value) pairs: node labels, or a label selector (every pair must match).
Labels = tuple[tuple[str, str], ...]

TOPOLOGIES = ("full-mesh", "route-reflector", "none", "auto")


def network_text(network: Network) -> str:
    """str(network), IPv4 printed by hand: ipaddress's own printing costs three times as
    much, and a speaker's start prints each of its (tens of thousands of) prefixes."""
    if network.version == 4:
        value = int(network.network_address)
        return (f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
                f"/{network.prefixlen}")
    return str(network)


def labels_match(labels: Labels, selector: Labels) -> bool:
    """Whether labels carry every pair of the selector; an empty selector matches anything."""
    return all(pair in labels for pair in selector)


@dataclass(frozen=True, slots=True)
class Node:
    """A node of the cluster as BGP sees it."""

    name: str
    addresses: tuple[Address, ...]  # at most one per family, IPv4 first
    router_id: IPv4Address
    labels: Labels
    port: int  # where this node's speaker listens (bgp.port or the node's bgpPort)
    pod_cidrs: tuple[Network, ...] = ()  # the node's CIDRs as the plan computes them

    @property
    def address(self) -> Address:
        """The router-id-family address: the IPv4 one if the node has one."""
        return self.addresses[0]

    def address_of(self, version: int) -> Address | None:
        """The node's address of an IP version (4 or 6), None if it has none."""
        return next((a for a in self.addresses if a.version == version), None)

    def label(self, key: str) -> str | None:
        return next((value for k, value in self.labels if k == key), None)

    def matches(self, selector: Labels) -> bool:
        return labels_match(self.labels, selector)


@dataclass(frozen=True, slots=True)
class ExternalPeer:
    """A BGP speaker outside the spec's nodes: a ToR switch, an external route reflector."""

    address: Address
    as_number: int
    port: int
    node_selector: Labels  # empty -> every node
    password_env: str | None
    password: str | None  # resolved by the planner when a command needs it, else None


@dataclass(frozen=True, slots=True)
class BgpSettings:
    as_number: int
    port: int
    topology: str  # one of TOPOLOGIES
    reflector_names: tuple[str, ...]
    reflector_selector: Labels  # empty -> no selector
    cluster_id: IPv4Address | None
    peers: tuple[ExternalPeer, ...]
