"""The spec and the plan as BGP sees them: translation into bgp.model, then bgp's planner.

bgp/ never reads the spec or the environment; this is where passwords come from
`passwordEnv` and node CIDRs from the allocation plan.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bgp import BgpSettings, ExternalPeer, Node, Topology, TopologyError, plan_topology
from bgp.topology import Summary, summarize
from ipam.errors import InvalidInput
from ipam.net import Address, Cidr
from planner.spec import Spec

if TYPE_CHECKING:
    from planner.plan import Plan  # the speaker's path (topology_of without a plan) skips it


def _ip(address: Address):
    # From the integer, not the text: thousands of nodes convert in milliseconds.
    cls = ipaddress.IPv4Address if address.version == 4 else ipaddress.IPv6Address
    return cls(address.value)


def _net(cidr: Cidr):
    cls = ipaddress.IPv4Network if cidr.version == 4 else ipaddress.IPv6Network
    return cls((cidr.value, cidr.prefixlen))


def bgp_settings(spec: Spec, env: Mapping[str, str] | None = None) -> BgpSettings:
    """The spec's bgp section; with env, every passwordEnv is resolved and must be set."""
    peers = []
    for p in spec.bgp.peers:
        password = None
        if env is not None and p.password_env is not None:
            password = env.get(p.password_env)
            if password is None:
                raise InvalidInput(f"{p.field}.passwordEnv", p.password_env,
                                   "is not set in the environment")
        peers.append(ExternalPeer(_ip(p.address), p.as_number, p.port, p.node_selector,
                                  p.password_env, password))
    b = spec.bgp
    return BgpSettings(
        as_number=b.as_number,
        port=b.port,
        topology=b.topology,
        reflector_names=b.reflector_names,
        reflector_selector=b.reflector_selector,
        cluster_id=_ip(b.cluster_id) if b.cluster_id else None,
        peers=tuple(peers),
    )


def _nodes(spec: Spec, cidrs: Mapping[str, tuple[Cidr, ...]]) -> list[Node]:
    return [
        Node(
            name=n.name,
            addresses=tuple(_ip(a) for a in n.addresses),
            router_id=_ip(n.router_id),
            labels=n.labels,
            port=n.bgp_port or spec.bgp.port,
            pod_cidrs=tuple(_net(c) for c in cidrs.get(n.name, ())),
        )
        for n in spec.nodes
    ]


def topology_summary(spec: Spec, plan: Plan) -> Summary:
    """Mode and session count for `plan`; cheap even for a full mesh of thousands."""
    cidrs = {n.name: n.pod_cidrs for n in plan.nodes}
    try:
        return summarize(spec.cluster, _nodes(spec, cidrs), bgp_settings(spec))
    except TopologyError as exc:
        raise InvalidInput(exc.field, exc.value, exc.reason) from None


def topology_of(spec: Spec, plan: Plan | None = None, *, secrets: bool = False) -> Topology:
    """Every node's sessions; with a plan, nodes carry their CIDRs and BIRD's import filter
    the resolved pools. secrets: resolve passwords from the environment (exit 2 if unset)."""
    cidrs = {n.name: n.pod_cidrs for n in plan.nodes} if plan else {}
    pools = ([u.pool.cidr for u in plan.usage] if plan
             else [p.cidr for p in spec.pools if p.cidr is not None])
    nodes = _nodes(spec, cidrs)
    settings = bgp_settings(spec, os.environ if secrets else None)
    try:
        return plan_topology(spec.cluster, nodes, settings, [_net(c) for c in pools])
    except TopologyError as exc:
        raise InvalidInput(exc.field, exc.value, exc.reason) from None
