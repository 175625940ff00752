"""What other tools read, rendered from one plan: kubeadm, Calico, flannel, Kubernetes Nodes.

`cluster_facts` gathers what the targets need from the spec, the plan and (for Calico) the
BGP topology into one JSON-like dict; each renderer takes that dict and returns text. The
renderers are pure: no store, no environment, no clock.

netplan is the allocator of node CIDRs in every target: kube-controller-manager runs with
`--allocate-node-cidrs=false` (two allocators would disagree, and a Node's podCIDR can be
set only once), `render nodes` sets every Node's podCIDRs, and flannel
(`--kube-subnet-mgr`) or Calico's host-local IPAM (`usePodCidr`) read them from there.
"""

from __future__ import annotations

import json
import re
import shlex

import yaml

from bgp.topology import RACK_LABEL, REFLECTOR, Topology
from ipam.errors import InvalidInput
from planner.plan import Plan
from planner.spec import Spec

# What each target prints without -o: the form its tool reads.
DEFAULT_FORMAT = {"kubeadm": "yaml", "calico": "yaml", "flannel": "json", "nodes": "kubectl"}
FORMATS = {
    "kubeadm": ("yaml", "json"),
    "calico": ("yaml", "json"),
    "flannel": ("json", "yaml"),
    "nodes": ("kubectl", "yaml", "json"),
}

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
CALICO_API = "projectcalico.org/v3"
# kubeadm's PodSubnetNodeMaskMaxDiff: kubeadm refuses a podSubnet more than 16 bits wider
# than the node mask (IPv4 too, unlike kube-controller-manager).
KUBEADM_MAX_MASK_DIFF = 16
# Calico's documented IPPool blockSize range per family.
CALICO_BLOCK_SIZES = {4: (20, 32), 6: (116, 128)}
CALICO_BGP_PORT = 179
# The label Calico's route reflector guide selects reflectors by.
CALICO_RR_LABEL = "route-reflector"
# Where Calico's BGPPeers find the MD5 passwords: one Secret, one key per passwordEnv.
PASSWORD_SECRET = "netplan-bgp-passwords"
FLANNEL_CONFIGMAP = ("kube-flannel-cfg", "kube-flannel")  # name, namespace (kube-flannel.yml)
FLANNEL_BACKEND = "host-gw"  # routes to each node's CIDR, as BGP would: no encapsulation


# --- facts -------------------------------------------------------------------------------


def cluster_facts(spec: Spec, plan: Plan, topology: Topology | None = None) -> dict:
    """What the targets need, as plain data. topology: only Calico needs it (the BGP part)."""
    facts = {
        "cluster": plan.cluster,
        # plan.usage follows the spec's pool order, automatic CIDRs resolved
        "pools": [
            {"name": u.pool.name, "cidr": str(u.pool.cidr),
             "prefixLength": u.pool.cidr.prefixlen, "nodeMaskSize": u.pool.node_mask,
             "version": u.pool.cidr.version, "field": p.field}
            for p, u in zip(spec.pools, plan.usage)
        ],
        "services": [str(c) for c in plan.services],
        "reserved": [str(r) for r in spec.reserved],
        "nodes": [{"name": n.name, "podCIDRs": [str(c) for c in n.pod_cidrs]}
                  for n in plan.nodes],
    }
    if topology is not None:
        facts["bgp"] = _bgp_facts(spec, topology)
    return facts


def _bgp_facts(spec: Spec, topology: Topology) -> dict:
    reflectors = [e for e in topology.nodes if e.role == "reflector"]
    return {
        "asNumber": spec.bgp.as_number,
        "port": spec.bgp.port,
        "topology": topology.topology,  # auto resolved
        "nodePorts": [{"name": n.name, "port": n.bgp_port} for n in spec.nodes
                      if n.bgp_port is not None and n.bgp_port != spec.bgp.port],
        "reflectors": [{"name": e.name, "clusterId": str(e.cluster_id),
                        "rack": e.node.label(RACK_LABEL)} for e in reflectors],
        "clients": [{"name": e.name, "rack": e.node.label(RACK_LABEL),
                     "reflectors": sorted({p.name for p in e.peers if p.kind == REFLECTOR})}
                    for e in topology.nodes if e.role == "client"],
        "peers": [{"address": str(p.address), "asNumber": p.as_number, "port": p.port,
                   "nodeSelector": dict(p.node_selector), "passwordEnv": p.password_env,
                   "field": p.field} for p in spec.bgp.peers],
    }


def render(target: str, facts: dict, fmt: str | None = None) -> str:
    """The text of one target; fmt: one of FORMATS[target], None for the target's own."""
    fmt = fmt or DEFAULT_FORMAT[target]
    if fmt not in FORMATS[target]:
        raise InvalidInput("--output", fmt,
                           f"is not a format of render {target} ({', '.join(FORMATS[target])})")
    return _RENDERERS[target](facts, fmt)


def _one_per_family(pools: list[dict], tool: str) -> list[dict]:
    """The pools, if no family has two: Kubernetes and flannel take one range per family."""
    seen: dict[int, dict] = {}
    for p in pools:
        first = seen.setdefault(p["version"], p)
        if first is not p:
            raise InvalidInput(
                p["field"], p["cidr"],
                f"is a second IPv{p['version']} pool ({first['field']} is the first): {tool} "
                "takes one range per address family",
            )
    return pools


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (flannel's net-conf.json in its ConfigMap) as literal blocks."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


def _yaml(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def _yaml_stream(documents: list[tuple[list[str], dict]]) -> str:
    """Multi-document YAML, each document after its comment lines."""
    parts = []
    for comments, doc in documents:
        head = "".join(f"# {line}\n" if line else "#\n" for line in comments)
        parts.append(head + _yaml(doc))
    return "---\n" + "---\n".join(parts)


def _json(data: object) -> str:
    return json.dumps(data, indent=2) + "\n"


# --- kubeadm -----------------------------------------------------------------------------


def kubeadm_flags(facts: dict) -> list[tuple[str, str]]:
    """kube-controller-manager's flags for the plan, without the leading dashes."""
    pools = _one_per_family(facts["pools"], "kube-controller-manager (--cluster-cidr)")
    for p in pools:
        if p["nodeMaskSize"] - p["prefixLength"] > KUBEADM_MAX_MASK_DIFF:
            raise InvalidInput(
                f"{p['field']}.nodeMaskSize", p["nodeMaskSize"],
                f"is more than {KUBEADM_MAX_MASK_DIFF} bits longer than {p['cidr']}: kubeadm "
                "refuses such a podSubnet",
            )
    flags = [("allocate-node-cidrs", "false"),
             ("cluster-cidr", ",".join(p["cidr"] for p in pools))]
    # Only the flags of the families present: kube-controller-manager refuses
    # --node-cidr-mask-size-ipv6 in a single-stack IPv4 cluster (and the reverse).
    flags += [(f"node-cidr-mask-size-ipv{p['version']}", str(p["nodeMaskSize"])) for p in pools]
    flags.append(("service-cluster-ip-range", ",".join(facts["services"])))
    return flags


def kubeadm_document(facts: dict) -> dict:
    flags = kubeadm_flags(facts)
    return {
        "apiVersion": KUBEADM_API,
        "kind": "ClusterConfiguration",
        "networking": {
            "podSubnet": ",".join(p["cidr"] for p in facts["pools"]),
            "serviceSubnet": ",".join(facts["services"]),
        },
        "controllerManager": {"extraArgs": [{"name": n, "value": v} for n, v in flags]},
    }


def _render_kubeadm(facts: dict, fmt: str) -> str:
    doc = kubeadm_document(facts)
    if fmt == "json":
        return _json(doc)
    command = " ".join(f"--{a['name']}={a['value']}" for a in doc["controllerManager"]["extraArgs"])
    comments = [
        f"kubeadm ClusterConfiguration (networking) of cluster {facts['cluster']}, from netplan's",
        "plan: kubeadm init --config THIS-FILE (merge it into your own ClusterConfiguration).",
        "netplan allocates the node CIDRs (netplan render nodes), so kube-controller-manager",
        "must not: --allocate-node-cidrs=false. Without kubeadm, its flags are:",
        f"  kube-controller-manager {command}",
    ]
    return _yaml_stream([(comments, doc)])


# --- Calico ------------------------------------------------------------------------------


def _selector(labels: dict[str, str], field: str) -> str:
    """A Calico selector for a netplan label selector: every pair must match."""
    if not labels:
        return "all()"
    terms = []
    for key, value in sorted(labels.items()):
        quote = "'" if "'" not in value else '"'
        if quote in value:
            raise InvalidInput(field, value, "holds both quote characters: no Calico selector "
                               "can spell it")
        terms.append(f"{key} == {quote}{value}{quote}")
    return " && ".join(terms)


def _peer_ip(address: str, port: int) -> str:
    if port == CALICO_BGP_PORT:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _peer_name(address: str) -> str:
    """A resource name (DNS subdomain) for an external peer, one per address.

    ':' cannot stand in a name: each becomes '-'; a trailing '::' gets its implicit 0, so
    that the name ends with a digit and no two addresses share a name.
    """
    name = "peer-" + address.replace(":", "-")
    return name + "0" if name.endswith("-") else name


def _rack_name(rack: str) -> str:
    """A resource name part from a rack label value (which may hold upper case, '_')."""
    return re.sub(r"[^a-z0-9.-]+", "-", rack.lower()).strip("-.") or "rack"


def _ippool(p: dict) -> dict:
    lo, hi = CALICO_BLOCK_SIZES[p["version"]]
    if not lo <= p["nodeMaskSize"] <= hi:
        raise InvalidInput(
            f"{p['field']}.nodeMaskSize", p["nodeMaskSize"],
            f"is no Calico block size for IPv{p['version']} (blockSize {lo}..{hi})",
        )
    return {
        "apiVersion": CALICO_API,
        "kind": "IPPool",
        "metadata": {"name": p["name"]},
        "spec": {
            "cidr": p["cidr"],
            "blockSize": p["nodeMaskSize"],
            "ipipMode": "Never",  # plain BGP routing: pod CIDRs are routed, not tunnelled
            "vxlanMode": "Never",
            "natOutgoing": True,
            "nodeSelector": "all()",
        },
    }


def _reflector_peers(bgp: dict) -> list[tuple[list[str], dict]]:
    """BGPPeers that make Calico's reflector sessions those of netplan's topology.

    Either every client peers with every reflector (one BGPPeer, as in Calico's guide), or
    (auto with rack labels) a rack's reflectors serve that rack's clients: one BGPPeer per
    rack, one for clients without a rack label, and one meshing the reflectors.
    """
    rr = f"{CALICO_RR_LABEL} == 'true'"
    every = sorted(r["name"] for r in bgp["reflectors"])
    if all(c["reflectors"] == every for c in bgp["clients"]):
        return [(["every node peers with every route reflector"],
                 _bgp_peer("route-reflectors", {"nodeSelector": "all()", "peerSelector": rr}))]
    docs = [(["route reflectors peer with each other"],
             _bgp_peer("route-reflector-mesh", {"nodeSelector": rr, "peerSelector": rr}))]
    racks = sorted({c["rack"] for c in bgp["clients"] if c["rack"] is not None})
    names: set[str] = set()
    for rack in racks:
        name = f"route-reflectors-rack-{_rack_name(rack)}"
        name = name if name not in names else f"{name}-{len(names)}"
        names.add(name)
        same_rack = _selector({RACK_LABEL: rack}, f"node label {RACK_LABEL}")
        docs.append(([f"{RACK_LABEL} {rack}: clients peer with the reflectors of their rack"],
                     _bgp_peer(name, {"nodeSelector": same_rack,
                                      "peerSelector": f"{rr} && {same_rack}"})))
    if any(c["rack"] is None for c in bgp["clients"]):
        docs.append(([f"clients without a {RACK_LABEL} label peer with every reflector"],
                     _bgp_peer("route-reflectors-no-rack",
                               {"nodeSelector": f"!has({RACK_LABEL})", "peerSelector": rr})))
    return docs


def _bgp_peer(name: str, spec: dict) -> dict:
    return {"apiVersion": CALICO_API, "kind": "BGPPeer", "metadata": {"name": name},
            "spec": spec}


def calico_documents(facts: dict) -> list[tuple[list[str], dict]]:
    """(comment lines, resource) for every Calico resource of the plan, in apply order."""
    bgp = facts["bgp"]
    docs: list[tuple[list[str], dict]] = [
        ([f"pool {p['name']} ({p['field']}): one block per node CIDR"], _ippool(p))
        for p in facts["pools"]
    ]
    if facts["reserved"]:
        docs.append((["reserved: never handed to a pod"], {
            "apiVersion": CALICO_API, "kind": "IPReservation",
            "metadata": {"name": f"{facts['cluster']}-reserved"},
            "spec": {"reservedCIDRs": facts["reserved"]},
        }))
    config = {
        "nodeToNodeMeshEnabled": bgp["topology"] == "full-mesh",
        "asNumber": bgp["asNumber"],
        "serviceClusterIPs": [{"cidr": c} for c in facts["services"]],
    }
    if bgp["port"] != CALICO_BGP_PORT:
        config["listenPort"] = bgp["port"]
    docs.append(([f"BGP topology {bgp['topology']}"], {
        "apiVersion": CALICO_API, "kind": "BGPConfiguration",
        "metadata": {"name": "default"}, "spec": config,
    }))
    docs += [([f"node {n['name']} listens on its own port (bgpPort)"], {
        "apiVersion": CALICO_API, "kind": "BGPConfiguration",
        "metadata": {"name": f"node.{n['name']}"}, "spec": {"listenPort": n["port"]},
    }) for n in bgp["nodePorts"]]
    for p in bgp["peers"]:
        spec = {
            "peerIP": _peer_ip(p["address"], p["port"]),
            "asNumber": p["asNumber"],
            "nodeSelector": _selector(p["nodeSelector"], f"{p['field']}.nodeSelector"),
        }
        comments = [f"external peer {p['field']}"]
        if p["passwordEnv"]:
            spec["password"] = {"secretKeyRef": {"name": PASSWORD_SECRET,
                                                 "key": p["passwordEnv"]}}
            comments.append(
                f"password: kubectl -n NAMESPACE-OF-CALICO-NODE create secret generic "
                f"{PASSWORD_SECRET} --from-literal={p['passwordEnv']}=\"${p['passwordEnv']}\" "
                "(and let calico-node read it)")
        docs.append((comments, _bgp_peer(_peer_name(p["address"]), spec)))
    if bgp["topology"] == "route-reflector":
        docs += _reflector_peers(bgp)
        for r in bgp["reflectors"]:
            patch = {"metadata": {"labels": {CALICO_RR_LABEL: "true"}},
                     "spec": {"bgp": {"routeReflectorClusterID": r["clusterId"]}}}
            docs.append(([
                f"route reflector {r['name']}: a partial Node, to merge, never to replace:",
                f"  calicoctl patch node {r['name']} --patch "
                f"{shlex.quote(json.dumps(patch, separators=(',', ':')))}",
            ], {"apiVersion": CALICO_API, "kind": "Node",
                "metadata": {"name": r["name"], **patch["metadata"]}, "spec": patch["spec"]}))
    return docs


def _render_calico(facts: dict, fmt: str) -> str:
    docs = calico_documents(facts)
    if fmt == "json":
        return _json([doc for _, doc in docs])
    head = [
        f"Calico resources of cluster {facts['cluster']}, from netplan's plan: calicoctl apply",
        "-f THIS-FILE, except the Node documents (see their comments). For pods to use the",
        "node CIDRs netplan allocated, run Calico's CNI with host-local IPAM",
        '("subnet": "usePodCidr") and set the Nodes\' podCIDRs with netplan render nodes.',
    ]
    (first_comments, first), *rest = docs
    return _yaml_stream([(head + [""] + first_comments, first), *rest])


# --- flannel -----------------------------------------------------------------------------


def flannel_netconf(facts: dict) -> dict:
    """flannel's net-conf.json for its Kubernetes subnet manager (nodes' podCIDRs)."""
    pools = {p["version"]: p for p in _one_per_family(facts["pools"], "flannel")}
    conf: dict[str, object] = {}
    if 4 in pools:
        conf |= {"Network": pools[4]["cidr"], "SubnetLen": pools[4]["nodeMaskSize"]}
    else:
        conf["EnableIPv4"] = False  # flannel enables IPv4 unless told not to
    if 6 in pools:
        conf |= {"EnableIPv6": True, "IPv6Network": pools[6]["cidr"],
                 "IPv6SubnetLen": pools[6]["nodeMaskSize"]}
    conf["Backend"] = {"Type": FLANNEL_BACKEND}
    return conf


def _render_flannel(facts: dict, fmt: str) -> str:
    conf = json.dumps(flannel_netconf(facts), indent=2) + "\n"
    if fmt == "json":
        return conf
    name, namespace = FLANNEL_CONFIGMAP
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": name, "namespace": namespace},
                 "data": {"net-conf.json": conf}}
    comments = [f"flannel's net-conf.json for cluster {facts['cluster']}, in the ConfigMap of",
                "kube-flannel.yml; flanneld --kube-subnet-mgr takes each node's CIDRs from its",
                "Node (netplan render nodes)."]
    return _yaml_stream([(comments, configmap)])


# --- Kubernetes Nodes --------------------------------------------------------------------


def node_objects(facts: dict) -> list[dict]:
    """Every Node with the pod CIDRs of the plan (podCIDRs[0] is podCIDR, one per family)."""
    _one_per_family(facts["pools"], "a Node's spec.podCIDRs")
    return [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n["name"]},
             "spec": {"podCIDR": n["podCIDRs"][0], "podCIDRs": n["podCIDRs"]}}
            for n in facts["nodes"]]


def _render_nodes(facts: dict, fmt: str) -> str:
    nodes = node_objects(facts)
    if fmt == "kubectl":
        lines = [f"# pod CIDRs of the nodes of cluster {facts['cluster']}, from netplan's plan.",
                 "# A Node's podCIDRs can be set once (from empty): kube-controller-manager must",
                 "# run with --allocate-node-cidrs=false."]
        for n in nodes:
            patch = json.dumps({"spec": n["spec"]}, separators=(",", ":"))
            lines.append(f"kubectl patch node {shlex.quote(n['metadata']['name'])} "
                         f"--type merge -p {shlex.quote(patch)}")
        return "\n".join(lines) + "\n"
    listing = {"apiVersion": "v1", "kind": "List", "items": nodes}
    return _json(listing) if fmt == "json" else _yaml(listing)


_RENDERERS = {
    "kubeadm": _render_kubeadm,
    "calico": _render_calico,
    "flannel": _render_flannel,
    "nodes": _render_nodes,
}
