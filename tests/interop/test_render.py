"""render kubeadm | calico | flannel | nodes: every output against its target.

Each target is checked three ways where it can be: against the target's schema (the real
one where it installs from PyPI: kubernetes-validate for Node and ConfigMap; else one
written by hand from the target's documentation, see interop_schemas.py), against the
target's documented behaviour (kube-controller-manager's flag rules, Calico's peering
selectors), and against golden files written by hand from that documentation.

The golden files, errors and flags go through the real `netplan` process; the checks over
many specs call the same pure renderer in process (interop_support.render_text), which
is what the command prints.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from cli_support import EXAMPLES, assert_one_error_line
from interop_schemas import (CALICO, CALICO_BLOCK_SIZES, CALICO_NODE_BGP_CONFIG_FIELDS,
                             FLANNEL_NET_CONF, KUBEADM_CLUSTER_CONFIGURATION)
from interop_support import (calico_sessions, check_kube_controller_manager, plan_json,
                             render_text, topology_json, topology_sessions)

GOLDEN = Path(__file__).parent / "golden"
EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.yaml"))
EXAMPLE_IDS = [str(p.relative_to(EXAMPLES)) for p in EXAMPLE_FILES]


def _racks_spec() -> dict:
    """auto past 50 nodes with rack labels: two reflectors per rack serve that rack."""
    nodes = [{"name": f"r{rack}-n{i:02d}", "address": f"10.0.{rack}.{10 + i}",
              "labels": {"rack": f"r{rack}"}} for rack in (1, 2, 3) for i in range(18)]
    nodes += [{"name": f"loose-{i}", "address": f"10.0.9.{10 + i}"} for i in range(2)]
    return {"cluster": "racks", "avoid": ["10.0.0.0/16"], "nodes": nodes,
            "bgp": {"topology": "auto", "peers": [
                {"address": "10.0.1.254", "asNumber": 65001, "nodeSelector": {"rack": "r1"}}]}}


def _peers_spec() -> dict:
    """No mesh, external peers only: ports, an MD5 password, an IPv6 peer, a node's port."""
    return {
        "cluster": "edge",
        "pools": [{"name": "pods-v4", "cidr": "10.244.0.0/16", "nodeMaskSize": 26}],
        "nodes": [
            {"name": "node-a", "addresses": ["10.0.0.11", "fd00::11"], "labels": {"rack": "r1"}},
            {"name": "node-b", "addresses": ["10.0.0.12", "fd00::12"], "labels": {"rack": "r2"},
             "bgpPort": 1180},
        ],
        "bgp": {"topology": "none", "asNumber": 4200000001, "port": 1179, "peers": [
            {"address": "10.0.0.254", "asNumber": 65001, "port": 1790,
             "nodeSelector": {"rack": "r1"}, "passwordEnv": "TOR_PASSWORD"},
            {"address": "fd00::254", "asNumber": 4200000000},
        ]},
    }


def _two_v4_pools() -> dict:
    return {"cluster": "twice", "pools": [
        {"name": "a", "cidr": "10.244.0.0/16", "nodeMaskSize": 24},
        {"name": "b", "cidr": "10.245.0.0/16", "nodeMaskSize": 24}],
        "nodes": [{"name": "n1", "address": "10.0.0.1"}]}


def render(netplan, target: str, spec, *args: str):
    path = spec if isinstance(spec, Path) else netplan.spec(spec)
    return netplan("render", target, "-f", path, "--store", "memory:", *args)


def rendered(netplan, target: str, spec, *args: str) -> str:
    r = render(netplan, target, spec, *args)
    assert r.returncode == 0, r.describe()
    assert r.stderr == "" or r.stderr.startswith("warning:"), r.describe()
    return r.stdout


def _spec_data(spec) -> dict:
    return yaml.safe_load(spec.read_text()) if isinstance(spec, Path) else spec


# --- kubeadm -------------------------------------------------------------------------------


def test_kubeadm_matches_the_hand_written_golden_file(netplan):
    out = rendered(netplan, "kubeadm", EXAMPLES / "dual-stack.yaml")
    golden = yaml.safe_load((GOLDEN / "kubeadm-dual-stack.yaml").read_text())
    assert list(yaml.safe_load_all(out)) == [golden]
    # the comment says the same flags as a command line, for clusters without kubeadm
    assert ("kube-controller-manager --allocate-node-cidrs=false "
            "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56") in out


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_kubeadm_config_is_valid_and_says_what_the_plan_says(example):
    (doc,) = yaml.safe_load_all(render_text(example, "kubeadm"))
    assert json.loads(render_text(example, "kubeadm", "json")) == doc
    jsonschema.validate(doc, KUBEADM_CLUSTER_CONFIGURATION)
    args = {a["name"]: a["value"] for a in doc["controllerManager"]["extraArgs"]}
    check_kube_controller_manager(args)
    plan = plan_json(example)
    pools = ",".join(p["cidr"] for p in plan["pools"])
    assert doc["networking"]["podSubnet"] == args["cluster-cidr"] == pools
    services = ",".join(plan["services"]["cidrs"])
    assert doc["networking"]["serviceSubnet"] == args["service-cluster-ip-range"] == services
    for p in plan["pools"]:
        version = 6 if ":" in p["cidr"] else 4
        assert args[f"node-cidr-mask-size-ipv{version}"] == str(p["nodeMaskSize"])
    assert args["allocate-node-cidrs"] == "false"  # netplan allocates (render nodes)


def test_kubeadm_refuses_what_kubeadm_and_the_controller_manager_refuse(netplan):
    wide = {"cluster": "wide", "pools": [{"cidr": "10.0.0.0/8", "nodeMaskSize": 26}],
            "services": {"cidr": "172.16.0.0/12"},
            "nodes": [{"name": "n1", "address": "192.168.0.1"}]}
    line = assert_one_error_line(render(netplan, "kubeadm", wide), 2)
    assert "pools[0].nodeMaskSize" in line and "16 bits" in line
    line = assert_one_error_line(render(netplan, "kubeadm", _two_v4_pools()), 2)
    assert "pools[1]" in line and "10.245.0.0/16" in line and "one range per address family" in line


# --- Calico --------------------------------------------------------------------------------

CALICO_SPECS = [
    pytest.param(EXAMPLES / "calico.yaml", id="calico-reflectors"),
    pytest.param(EXAMPLES / "flannel.yaml", id="flannel-full-mesh"),
    pytest.param(EXAMPLES / "multi-cluster" / "staging.yaml", id="staging-auto-ranges"),
    pytest.param(_racks_spec(), id="auto-reflectors-per-rack"),
    pytest.param(_peers_spec(), id="none-external-peers"),
]


def calico_docs(spec) -> list[dict]:
    docs = list(yaml.safe_load_all(render_text(spec, "calico")))
    assert json.loads(render_text(spec, "calico", "json")) == docs
    return docs


def test_calico_matches_the_hand_written_golden_file(netplan):
    docs = list(yaml.safe_load_all(rendered(netplan, "calico", EXAMPLES / "calico.yaml")))
    assert docs == list(yaml.safe_load_all((GOLDEN / "calico-calico.yaml").read_text()))
    as_json = rendered(netplan, "calico", EXAMPLES / "calico.yaml", "-o", "json")
    assert json.loads(as_json) == docs


@pytest.mark.parametrize("spec", CALICO_SPECS)
def test_calico_resources_follow_calicos_schemas(spec):
    docs = calico_docs(spec)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "resource names collide"
    for doc in docs:
        jsonschema.validate(doc, CALICO[doc["kind"]])
        if doc["kind"] == "IPPool":
            lo, hi = CALICO_BLOCK_SIZES[6 if ":" in doc["spec"]["cidr"] else 4]
            assert lo <= doc["spec"]["blockSize"] <= hi
            assert doc["spec"]["ipipMode"] == doc["spec"]["vxlanMode"] == "Never"
        if doc["kind"] == "BGPConfiguration" and doc["metadata"]["name"] != "default":
            assert doc["metadata"]["name"].startswith("node.")
            assert set(doc["spec"]) <= CALICO_NODE_BGP_CONFIG_FIELDS
        if doc["kind"] == "BGPPeer":
            assert not ("peerSelector" in doc["spec"] and "peerIP" in doc["spec"])
    plan = plan_json(spec)
    pools = {(d["spec"]["cidr"], d["spec"]["blockSize"]) for d in docs if d["kind"] == "IPPool"}
    assert pools == {(p["cidr"], p["nodeMaskSize"]) for p in plan["pools"]}
    (config,) = [d for d in docs if d["metadata"]["name"] == "default"]
    assert [c["cidr"] for c in config["spec"]["serviceClusterIPs"]] == plan["services"]["cidrs"]


@pytest.mark.parametrize("spec", CALICO_SPECS)
def test_calico_peers_as_netplan_topology_does(spec):
    """Calico's selector semantics applied to the resources give the planned sessions."""
    docs = calico_docs(spec)
    labels = {n["name"]: {k: str(v) for k, v in (n.get("labels") or {}).items()}
              for n in _spec_data(spec)["nodes"]}
    reflectors = {}
    for doc in docs:
        if doc["kind"] == "Node":
            labels[doc["metadata"]["name"]].update(doc["metadata"].get("labels", {}))
            reflectors[doc["metadata"]["name"]] = doc["spec"]["bgp"]["routeReflectorClusterID"]
    topology = topology_json(spec)
    assert calico_sessions(docs, labels) == topology_sessions(topology)
    assert set(reflectors) == {n["name"] for n in topology["nodes"] if n["role"] == "reflector"}


def test_calico_ports_and_passwords(netplan):
    docs = calico_docs(_peers_spec())
    by_name = {d["metadata"]["name"]: d for d in docs}
    assert by_name["default"]["spec"]["listenPort"] == 1179
    assert by_name["default"]["spec"]["nodeToNodeMeshEnabled"] is False
    assert by_name["node.node-b"]["spec"] == {"listenPort": 1180}
    tor = by_name["peer-10.0.0.254"]["spec"]
    assert tor["peerIP"] == "10.0.0.254:1790" and tor["nodeSelector"] == "rack == 'r1'"
    assert tor["password"] == {"secretKeyRef": {"name": "netplan-bgp-passwords",
                                                "key": "TOR_PASSWORD"}}
    v6 = by_name["peer-fd00--254"]["spec"]
    assert v6 == {"peerIP": "fd00::254", "asNumber": 4200000000, "nodeSelector": "all()"}
    # the password itself is never written, even when it is set
    r = netplan("render", "calico", "-f", netplan.spec(_peers_spec()), "--store", "memory:",
                env={"TOR_PASSWORD": "s3cret-md5"})
    assert r.returncode == 0 and "s3cret-md5" not in r.stdout


def test_calico_refuses_an_ipv6_node_mask_that_is_no_calico_block(netplan):
    line = assert_one_error_line(render(netplan, "calico", EXAMPLES / "dual-stack.yaml"), 2)
    assert "pools[1].nodeMaskSize" in line and "116..128" in line


# --- flannel -------------------------------------------------------------------------------


def test_flannel_matches_the_hand_written_golden_file(netplan):
    out = rendered(netplan, "flannel", EXAMPLES / "dual-stack.yaml")
    assert json.loads(out) == json.loads((GOLDEN / "flannel-dual-stack.json").read_text())


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_flannel_net_conf_is_valid_and_says_what_the_plan_says(example, kubernetes_validate):
    conf = json.loads(render_text(example, "flannel"))
    jsonschema.validate(conf, FLANNEL_NET_CONF)
    plan = plan_json(example)
    v4 = [p for p in plan["pools"] if ":" not in p["cidr"]]
    v6 = [p for p in plan["pools"] if ":" in p["cidr"]]
    assert (conf.get("Network"), conf.get("SubnetLen")) == (
        (v4[0]["cidr"], v4[0]["nodeMaskSize"]) if v4 else (None, None))
    assert (conf.get("IPv6Network"), conf.get("IPv6SubnetLen"), conf.get("EnableIPv6", False)) == (
        (v6[0]["cidr"], v6[0]["nodeMaskSize"], True) if v6 else (None, None, False))
    assert conf["Backend"] == {"Type": "host-gw"}
    # -o yaml: the same net-conf.json in kube-flannel.yml's ConfigMap, a valid ConfigMap
    (configmap,) = yaml.safe_load_all(render_text(example, "flannel", "yaml"))
    kubernetes_validate.validate(configmap, kubernetes_validate.latest_version(), strict=True)
    assert configmap["metadata"] == {"name": "kube-flannel-cfg", "namespace": "kube-flannel"}
    assert json.loads(configmap["data"]["net-conf.json"]) == conf


def test_flannel_ipv6_only_turns_ipv4_off(netplan):
    spec = {"cluster": "six", "pools": [{"name": "pods-v6", "cidr": "fd00:10:244::/56"}],
            "nodes": [{"name": "n1", "addresses": ["fd00::1"], "routerId": "10.0.0.1"}]}
    conf = json.loads(render_text(spec, "flannel"))
    assert conf == {"EnableIPv4": False, "EnableIPv6": True, "IPv6Network": "fd00:10:244::/56",
                    "IPv6SubnetLen": 64, "Backend": {"Type": "host-gw"}}
    line = assert_one_error_line(render(netplan, "flannel", _two_v4_pools()), 2)
    assert "pools[1]" in line and "flannel" in line


# --- Kubernetes Nodes ----------------------------------------------------------------------


def _commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_nodes_match_the_hand_written_golden_file(netplan):
    out = rendered(netplan, "nodes", EXAMPLES / "dual-stack.yaml")
    assert _commands(out) == _commands((GOLDEN / "nodes-dual-stack.sh").read_text())


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=EXAMPLE_IDS)
def test_node_patches_are_valid_nodes_with_the_planned_cidrs(example, kubernetes_validate):
    version = kubernetes_validate.latest_version()
    expected = {n["name"]: n["podCIDRs"] for n in plan_json(example)["nodes"]}
    patched = {}
    for command in _commands(render_text(example, "nodes")):
        words = shlex.split(command)
        assert words[:3] == ["kubectl", "patch", "node"] and words[4:7] == [
            "--type", "merge", "-p"] and len(words) == 8, command
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": words[3]},
                **json.loads(words[7])}
        kubernetes_validate.validate(node, version, strict=True)
        patched[words[3]] = node["spec"]["podCIDRs"]
        assert node["spec"]["podCIDR"] == node["spec"]["podCIDRs"][0]
    assert patched == expected
    listing = yaml.safe_load(render_text(example, "nodes", "yaml"))
    assert json.loads(render_text(example, "nodes", "json")) == listing
    assert (listing["apiVersion"], listing["kind"]) == ("v1", "List")
    for item in listing["items"]:
        kubernetes_validate.validate(item, version, strict=True)
    assert {i["metadata"]["name"]: i["spec"]["podCIDRs"] for i in listing["items"]} == expected


def test_nodes_refuse_two_cidrs_of_one_family(netplan):
    line = assert_one_error_line(render(netplan, "nodes", _two_v4_pools()), 2)
    assert "pools[1]" in line and "podCIDRs" in line


# --- the command line ----------------------------------------------------------------------


def test_bird_and_exabgp_still_need_a_node(netplan):
    spec = EXAMPLES / "flannel.yaml"
    for daemon in ("bird", "exabgp"):
        line = assert_one_error_line(render(netplan, daemon, spec), 2)
        assert "--node" in line
    assert "protocol bgp" in rendered(netplan, "bird", spec, "--node", "node-a")
    line = assert_one_error_line(render(netplan, "bird", spec, "--node", "node-a", "-o", "json"), 2)
    assert "--output" in line


def test_cluster_targets_refuse_a_node_and_foreign_formats(netplan):
    spec = EXAMPLES / "flannel.yaml"
    line = assert_one_error_line(render(netplan, "kubeadm", spec, "--node", "node-a"), 2)
    assert "--node" in line
    line = assert_one_error_line(render(netplan, "calico", spec, "-o", "kubectl"), 2)
    assert "kubectl" in line and "yaml, json" in line


def test_render_out_writes_a_private_file(netplan):
    target = netplan.cwd / "kubeadm.yaml"
    r = render(netplan, "kubeadm", EXAMPLES / "flannel.yaml", "--out", target)
    assert r.returncode == 0 and r.stdout == "", r.describe()
    assert yaml.safe_load_all(target.read_text())
    assert target.stat().st_mode & 0o777 == 0o600
