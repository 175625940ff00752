"""The targets' own schemas, written by hand from their documentation and source, as JSON
Schemas (draft 2020-12) closed with additionalProperties: false, so that a misspelt or
invented field fails. Only what can be installed is checked by the real thing instead
(Kubernetes Nodes and ConfigMaps: kubernetes-validate, in the tests).

- Calico (projectcalico.org/v3): the resource reference pages (docs.tigera.io, Calico
  Open Source reference/resources: ippool, ipreservation, bgpconfig, bgppeer, node) and the
  CRDs of projectcalico/calico (libcalico-go/config/crd/crd.projectcalico.org_*.yaml).
- kubeadm: ClusterConfiguration of kubeadm.k8s.io/v1beta4 (kubernetes.io reference
  "kubeadm Configuration (v1beta4)", cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go):
  extraArgs became a list of {name, value} in v1beta4.
- flannel: the Config struct of flannel-io/flannel pkg/subnet/config.go (net-conf.json).
"""

from __future__ import annotations

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": list(required)}


_METADATA = _closed({
    "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
}, ("name",))

_SECRET_KEY_REF = _closed({"secretKeyRef": _closed({
    "name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"},
}, ("key",))})

_CIDR_LIST = {"type": "array", "items": _closed({"cidr": {"type": "string"}}, ("cidr",))}


def _resource(kind: str, spec: dict) -> dict:
    return _closed({
        "apiVersion": {"const": "projectcalico.org/v3"},
        "kind": {"const": kind},
        "metadata": _METADATA,
        "spec": spec,
    }, ("apiVersion", "kind", "metadata", "spec"))


CALICO = {
    "IPPool": _resource("IPPool", _closed({
        "cidr": {"type": "string"},
        "blockSize": {"type": "integer"},
        "ipipMode": {"enum": ["Always", "CrossSubnet", "Never"]},
        "vxlanMode": {"enum": ["Always", "CrossSubnet", "Never"]},
        "natOutgoing": {"type": "boolean"},
        "disabled": {"type": "boolean"},
        "disableBGPExport": {"type": "boolean"},
        "nodeSelector": {"type": "string"},
        "allowedUses": {"type": "array", "items": {"enum": ["Workload", "Tunnel",
                                                            "LoadBalancer"]}},
        "assignmentMode": {"enum": ["Automatic", "Manual"]},
    }, ("cidr",))),
    "IPReservation": _resource("IPReservation", _closed({
        "reservedCIDRs": {"type": "array", "items": {"type": "string"}},
    })),
    "BGPConfiguration": _resource("BGPConfiguration", _closed({
        "logSeverityScreen": {"type": "string"},
        "nodeToNodeMeshEnabled": {"type": "boolean"},
        "nodeMeshPassword": _SECRET_KEY_REF,
        "nodeMeshMaxRestartTime": {"type": "string"},
        "asNumber": {"type": "integer", "minimum": 1, "maximum": 4294967295},
        "serviceClusterIPs": _CIDR_LIST,
        "serviceExternalIPs": _CIDR_LIST,
        "serviceLoadBalancerIPs": _CIDR_LIST,
        "listenPort": {"type": "integer", "minimum": 1, "maximum": 65535},
        "bindMode": {"enum": ["None", "NodeIP"]},
        "communities": {"type": "array"},
        "prefixAdvertisements": {"type": "array"},
        "ignoredInterfaces": {"type": "array", "items": {"type": "string"}},
        "localWorkloadPeeringIPV4": {"type": "string"},
        "localWorkloadPeeringIPV6": {"type": "string"},
        "serviceLoadBalancerAggregation": {"enum": ["Enabled", "Disabled"]},
    })),
    "BGPPeer": _resource("BGPPeer", _closed({
        "node": {"type": "string"},
        "peerIP": {"type": "string"},
        "asNumber": {"type": "integer", "minimum": 1, "maximum": 4294967295},
        "localASNumber": {"type": "integer"},
        "nodeSelector": {"type": "string"},
        "peerSelector": {"type": "string"},
        "keepOriginalNextHop": {"type": "boolean"},
        "nextHopMode": {"enum": ["Auto", "Self", "Keep"]},
        "password": _SECRET_KEY_REF,
        "sourceAddress": {"enum": ["UseNodeIP", "None"]},
        "maxRestartTime": {"type": "string"},
        "numAllowedLocalASNumbers": {"type": "integer"},
        "ttlSecurity": {"type": "integer"},
        "filters": {"type": "array", "items": {"type": "string"}},
        "reachableBy": {"type": "string"},
        "localWorkloadSelector": {"type": "string"},
        "reversePeering": {"enum": ["Auto", "Manual"]},
    })),
    "Node": _resource("Node", _closed({
        "bgp": _closed({
            "asNumber": {"type": "integer"},
            "ipv4Address": {"type": "string"},
            "ipv6Address": {"type": "string"},
            "ipv4IPIPTunnelAddr": {"type": "string"},
            "routeReflectorClusterID": {"type": "string"},
        }),
    })),
}

# Only these fields may be set on a node-specific BGPConfiguration (node.<name>).
CALICO_NODE_BGP_CONFIG_FIELDS = {"prefixAdvertisements", "listenPort", "logSeverityScreen"}
CALICO_BLOCK_SIZES = {4: (20, 32), 6: (116, 128)}

_ARGS = {"type": "array", "items": _closed({"name": {"type": "string"},
                                            "value": {"type": "string"}}, ("name", "value"))}
_COMPONENT = _closed({"extraArgs": _ARGS, "extraVolumes": {"type": "array"},
                      "extraEnvs": {"type": "array"}})

KUBEADM_CLUSTER_CONFIGURATION = _closed({
    "apiVersion": {"const": "kubeadm.k8s.io/v1beta4"},
    "kind": {"const": "ClusterConfiguration"},
    "etcd": {"type": "object"},
    "networking": _closed({"serviceSubnet": {"type": "string"},
                           "podSubnet": {"type": "string"},
                           "dnsDomain": {"type": "string"}}),
    "kubernetesVersion": {"type": "string"},
    "controlPlaneEndpoint": {"type": "string"},
    "apiServer": {"type": "object"},
    "controllerManager": _COMPONENT,
    "scheduler": _COMPONENT,
    "dns": {"type": "object"},
    "proxy": {"type": "object"},
    "certificatesDir": {"type": "string"},
    "imageRepository": {"type": "string"},
    "featureGates": {"type": "object"},
    "clusterName": {"type": "string"},
    "encryptionAlgorithm": {"type": "string"},
    "certificateValidityPeriod": {"type": "string"},
    "caCertificateValidityPeriod": {"type": "string"},
}, ("apiVersion", "kind"))

FLANNEL_NET_CONF = _closed({
    "EnableIPv4": {"type": "boolean"},
    "EnableIPv6": {"type": "boolean"},
    "EnableNFTables": {"type": "boolean"},
    "Network": {"type": "string"},
    "IPv6Network": {"type": "string"},
    "Networks": {"type": "array", "items": {"type": "string"}},
    "IPv6Networks": {"type": "array", "items": {"type": "string"}},
    "SubnetMin": {"type": "string"},
    "SubnetMax": {"type": "string"},
    "IPv6SubnetMin": {"type": "string"},
    "IPv6SubnetMax": {"type": "string"},
    "SubnetLen": {"type": "integer"},
    "IPv6SubnetLen": {"type": "integer"},
    "Backend": {"type": "object", "required": ["Type"],
                "properties": {"Type": {"enum": ["vxlan", "host-gw", "udp", "wireguard",
                                                 "ipip", "ipsec", "alloc", "extension"]}}},
})
