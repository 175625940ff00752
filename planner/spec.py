"""The spec: read once at the boundary, validated, and turned into immutable values.

Every error is an `InvalidInput` naming the field path (`pools[0].cidr`) and the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from ipam.errors import InvalidInput
from planner.files import read_spec
from ipam.net import Address, Cidr, parse_address, parse_cidr
from ipam.pool import Pool

CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
# Kubernetes node names are DNS subdomains.
NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z"
)

TOPOLOGIES = ("full-mesh", "route-reflector", "none", "auto")
MAX_AS = 4294967295
# Services ranges: at most 20 host bits (kube-apiserver's limit), and room for the DNS IP.
SERVICES_MIN_PREFIX = {4: 12, 6: 108}
SERVICES_MAX_PREFIX = {4: 28, 6: 124}
DEFAULT_SERVICES = "10.96.0.0/12"
DEFAULT_AS = 64512
DEFAULT_PORT = 179
IPV6_NODE_MASK = 64


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    cidr: Cidr
    node_mask: int


PRESETS = {
    "flannel": Preset("flannel", parse_cidr("10.244.0.0/16"), 24),
    "calico": Preset("calico", parse_cidr("192.168.0.0/16"), 26),
}


@dataclass(frozen=True, slots=True)
class PoolSpec:
    name: str
    cidr: Cidr | None  # None: chosen automatically (IPv4)
    node_mask: int
    field: str  # e.g. "pools[0]"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    addresses: tuple[Address, ...]  # one per family, IPv4 first
    router_id: Address
    labels: tuple[tuple[str, str], ...]
    pins: tuple[Cidr, ...]
    bgp_port: int | None
    field: str

    @property
    def address(self) -> Address:
        return self.addresses[0]

    def matches(self, selector: tuple[tuple[str, str], ...]) -> bool:
        labels = dict(self.labels)
        return all(labels.get(k) == v for k, v in selector)


@dataclass(frozen=True, slots=True)
class PeerSpec:
    address: Address
    as_number: int
    port: int
    node_selector: tuple[tuple[str, str], ...]
    password_env: str | None
    field: str


@dataclass(frozen=True, slots=True)
class BgpSpec:
    as_number: int = DEFAULT_AS
    port: int = DEFAULT_PORT
    topology: str = "full-mesh"
    reflector_names: tuple[str, ...] = ()
    reflector_selector: tuple[tuple[str, str], ...] = ()
    cluster_id: Address | None = None
    peers: tuple[PeerSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Spec:
    cluster: str
    preset: Preset
    pools: tuple[PoolSpec, ...]
    services: tuple[Cidr, ...]  # empty: chosen automatically
    reserved: tuple[Cidr, ...]
    avoid: tuple[Cidr, ...]
    nodes: tuple[NodeSpec, ...]
    bgp: BgpSpec
    warnings: tuple[str, ...] = ()


# --- reading -----------------------------------------------------------------------------


# libyaml's parser where PyYAML was built with it: pure Python parses a 65,536-node spec
# in some 20 s, libyaml in about one.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one silently."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                duplicate = False
            if duplicate:
                raise InvalidInput(
                    f"line {key_node.start_mark.line + 1}", key, "is a duplicate key"
                )
            try:
                seen.add(key)
            except TypeError:
                pass
        return super().construct_mapping(node, deep)


def load_spec_file(path: str) -> Spec:
    """The spec in a file; `-`: on standard input (`netplan init | netplan plan -f -`), read
    up to planner.files.SPEC_LIMIT."""
    return load_spec_text(read_spec(path), path)


def load_spec_text(raw: bytes | str, source: str = "spec") -> Spec:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                "spec", source, f"is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x})"
            ) from None
    try:
        data = yaml.load(raw, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidInput("spec", source, _yaml_reason(exc)) from None
    if data is None:
        raise InvalidInput("spec", source, "is empty: it needs at least `cluster: NAME`")
    return parse_spec(data)


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "invalid YAML"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"is not valid YAML{where}: {problem}"


# --- typed access with field paths -------------------------------------------------------


def _mapping(value: Any, path: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(path or "spec", _shown(value), "must be a mapping")
    for key in value:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise InvalidInput(where, key, f"is not a known key (known: {', '.join(allowed)})")
    return value


def _shown(value: Any) -> Any:
    """A value as an error names it: a mapping or list as the spec writes it (flow YAML,
    cut short by InvalidInput), not as Python would."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()


def _list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise InvalidInput(path, _shown(value), "must be a list")
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(path, _shown(value), "must be a string")
    return value


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(path, _shown(value), "must be an integer")
    if not lo <= value <= hi:
        raise InvalidInput(path, value, f"is out of range ({lo}..{hi})")
    return value


def _name(value: Any, path: str, pattern: re.Pattern, limit: int) -> str:
    text = _str(value, path)
    if len(text) > limit or not pattern.match(text):
        raise InvalidInput(
            path, text,
            f"is not a valid name (lower-case letters, digits and '-', at most {limit} characters)",
        )
    return text


def _cidr(value: Any, path: str) -> Cidr:
    text = _str(value, path)
    try:
        return parse_cidr(text)
    except ValueError as exc:
        raise InvalidInput(path, text, str(exc)) from None


def _address(value: Any, path: str) -> Address:
    text = _str(value, path)
    try:
        return parse_address(text)
    except ValueError as exc:
        raise InvalidInput(path, text, str(exc)) from None


def _cidrs(value: Any, path: str) -> tuple[Cidr, ...]:
    if value is None:
        return ()
    return tuple(_cidr(v, f"{path}[{i}]") for i, v in enumerate(_list(value, path)))


def _label_value(value: Any, path: str) -> str:
    # Labels are strings in Kubernetes; YAML 1.1 reads `true` and `1` as other types.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidInput(path, _shown(value), "must be a string")


def _labels(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidInput(path, _shown(value), "must be a mapping of label names to values")
    labels = []
    for key, val in value.items():
        name = _label_value(key, f"{path}")
        if not LABEL_KEY.match(name) or len(name) > 316:
            raise InvalidInput(f"{path}", name, "is not a valid label name")
        labels.append((name, _label_value(val, f"{path}.{name}")))
    return tuple(sorted(labels))


# --- the spec ----------------------------------------------------------------------------

TOP_KEYS = ("cluster", "preset", "pools", "services", "reserved", "avoid", "nodes", "bgp")


def parse_spec(data: Any) -> Spec:
    top = _mapping(data, "", TOP_KEYS)
    if "cluster" not in top:
        raise InvalidInput("cluster", None, "is required (the cluster's name)")
    cluster = _name(top["cluster"], "cluster", CLUSTER_NAME, 63)
    preset_name = _str(top.get("preset", "flannel"), "preset")
    if preset_name not in PRESETS:
        raise InvalidInput("preset", preset_name, f"is not a preset ({', '.join(PRESETS)})")
    preset = PRESETS[preset_name]
    warnings: list[str] = []

    pools = _pools(top, preset)
    services = _services(top.get("services"))
    reserved = _cidrs(top.get("reserved"), "reserved")
    avoid = _cidrs(top.get("avoid"), "avoid")
    nodes = _nodes(top.get("nodes"), warnings)
    bgp = _bgp(top.get("bgp"), nodes, warnings)
    return Spec(cluster, preset, pools, services, reserved, avoid, nodes, bgp, tuple(warnings))


def _pools(top: dict, preset: Preset) -> tuple[PoolSpec, ...]:
    if "pools" not in top or top["pools"] is None:
        return (PoolSpec("pods-v4", None, preset.node_mask, "pools[0]"),)
    items = _list(top["pools"], "pools")
    if not items:
        raise InvalidInput("pools", [], "is empty: give at least one pool, or omit the key")
    pools = []
    names: dict[str, str] = {}
    for i, item in enumerate(items):
        path = f"pools[{i}]"
        m = _mapping(item, path, ("name", "cidr", "nodeMaskSize"))
        raw_cidr = m.get("cidr", "auto")
        cidr = None if raw_cidr == "auto" or raw_cidr is None else _cidr(raw_cidr, f"{path}.cidr")
        version = cidr.version if cidr else 4
        name = _name(m.get("name", f"pods-v{version}"), f"{path}.name", CLUSTER_NAME, 63)
        if name in names:
            raise InvalidInput(f"{path}.name", name, f"is a duplicate of {names[name]}.name")
        names[name] = path
        default_mask = preset.node_mask if version == 4 else IPV6_NODE_MASK
        mask = _int(m.get("nodeMaskSize", default_mask), f"{path}.nodeMaskSize", 0, 128)
        # An automatic pool is a /16 like the presets: validate the mask against that size.
        probe = cidr or preset.cidr
        try:
            Pool(name, probe, mask)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}.nodeMaskSize", mask, exc.reason) from None
        pools.append(PoolSpec(name, cidr, mask, path))
    return tuple(pools)


def _services(value: Any) -> tuple[Cidr, ...]:
    if value is None:
        return ()
    m = _mapping(value, "services", ("cidr", "cidrs"))
    if "cidr" in m and "cidrs" in m:
        raise InvalidInput("services", "cidr, cidrs", "give cidr or cidrs, not both")
    if "cidr" in m:
        cidrs: tuple[Cidr, ...] = (_cidr(m["cidr"], "services.cidr"),)
        paths = ["services.cidr"]
    elif "cidrs" in m:
        cidrs = _cidrs(m["cidrs"], "services.cidrs")
        paths = [f"services.cidrs[{i}]" for i in range(len(cidrs))]
        if not cidrs:
            raise InvalidInput("services.cidrs", [], "is empty")
    else:
        return ()
    families: dict[int, str] = {}
    for cidr, path in zip(cidrs, paths):
        if cidr.version in families:
            raise InvalidInput(path, str(cidr),
                               f"is a second IPv{cidr.version} range (one per family; "
                               f"{families[cidr.version]} is the first)")
        families[cidr.version] = path
        lo, hi = SERVICES_MIN_PREFIX[cidr.version], SERVICES_MAX_PREFIX[cidr.version]
        if cidr.prefixlen < lo:
            raise InvalidInput(path, str(cidr),
                               f"is too large: a services range has at most "
                               f"{cidr.bits - lo} host bits (/{lo})")
        if cidr.prefixlen > hi:
            raise InvalidInput(path, str(cidr),
                               f"is too small to hold the DNS IP (network + 10): at most /{hi}")
    return cidrs


def _nodes(value: Any, warnings: list[str]) -> tuple[NodeSpec, ...]:
    if value is None:
        return ()
    nodes = []
    names: dict[str, str] = {}
    owners: dict[Address, str] = {}
    for i, item in enumerate(_list(value, "nodes")):
        path = f"nodes[{i}]"
        m = _mapping(item, path, ("name", "address", "addresses", "routerId", "labels",
                                  "podCIDRs", "bgpPort"))
        if "name" not in m:
            raise InvalidInput(f"{path}.name", None, "is required")
        name = _name(m["name"], f"{path}.name", NODE_NAME, 253)
        if name in names:
            raise InvalidInput(f"{path}.name", name, f"is a duplicate of {names[name]}.name")
        names[name] = path
        addresses = _node_addresses(m, path)
        for addr_path, addr in addresses:
            if addr in owners:
                raise InvalidInput(addr_path, str(addr), f"is also the address of {owners[addr]}")
            owners[addr] = f"node {name}"
            if addr.is_loopback:
                warnings.append(f"node {name}: loopback address {addr} (fine for a test "
                                "cluster on one machine only)")
        ordered = tuple(sorted(a for _, a in addresses))
        if "routerId" in m:
            router_id = _address(m["routerId"], f"{path}.routerId")
            if router_id.version != 4:
                raise InvalidInput(f"{path}.routerId", str(router_id),
                                   "must be an IPv4 address")
        elif ordered[0].version == 4:
            router_id = ordered[0]
        else:
            raise InvalidInput(f"{path}.routerId", None,
                               "is required when a node has no IPv4 address")
        pins = _cidrs(m.get("podCIDRs"), f"{path}.podCIDRs")
        port = None
        if m.get("bgpPort") is not None:
            port = _int(m["bgpPort"], f"{path}.bgpPort", 1, 65535)
        nodes.append(NodeSpec(name, ordered, router_id, _labels(m.get("labels"), f"{path}.labels"),
                              pins, port, path))
    return tuple(nodes)


def _node_addresses(m: dict, path: str) -> list[tuple[str, Address]]:
    if "address" in m and "addresses" in m:
        raise InvalidInput(path, "address, addresses", "give address or addresses, not both")
    if "address" in m:
        found = [(f"{path}.address", _address(m["address"], f"{path}.address"))]
    elif "addresses" in m:
        items = _list(m["addresses"], f"{path}.addresses")
        found = [(f"{path}.addresses[{j}]", _address(v, f"{path}.addresses[{j}]"))
                 for j, v in enumerate(items)]
        if not found:
            raise InvalidInput(f"{path}.addresses", [], "is empty")
    else:
        raise InvalidInput(f"{path}.address", None, "is required (the node's own address)")
    seen: set[int] = set()
    for addr_path, addr in found:
        if addr.version in seen:
            raise InvalidInput(addr_path, str(addr),
                               f"is a second IPv{addr.version} address (one per family)")
        seen.add(addr.version)
    return found


def _bgp(value: Any, nodes: tuple[NodeSpec, ...], warnings: list[str]) -> BgpSpec:
    if value is None:
        return BgpSpec()
    m = _mapping(value, "bgp", ("asNumber", "port", "topology", "routeReflectors", "peers"))
    as_number = _int(m.get("asNumber", DEFAULT_AS), "bgp.asNumber", 1, MAX_AS)
    port = _int(m.get("port", DEFAULT_PORT), "bgp.port", 1, 65535)
    topology = _str(m.get("topology", "full-mesh"), "bgp.topology")
    if topology not in TOPOLOGIES:
        raise InvalidInput("bgp.topology", topology, f"is not one of {', '.join(TOPOLOGIES)}")

    names: tuple[str, ...] = ()
    selector: tuple[tuple[str, str], ...] = ()
    cluster_id = None
    rr = m.get("routeReflectors")
    if rr is not None:
        rr = _mapping(rr, "bgp.routeReflectors", ("names", "selector", "clusterId"))
        known = {n.name for n in nodes}
        raw_names = _list(rr.get("names") or [], "bgp.routeReflectors.names")
        names = tuple(_str(n, f"bgp.routeReflectors.names[{i}]") for i, n in enumerate(raw_names))
        for i, n in enumerate(names):
            if n not in known:
                raise InvalidInput(f"bgp.routeReflectors.names[{i}]", n,
                                   "is not a node of the spec")
        selector = _labels(rr.get("selector"), "bgp.routeReflectors.selector")
        if selector and not any(n.matches(selector) for n in nodes):
            raise InvalidInput("bgp.routeReflectors.selector", dict(selector),
                               "matches no node of the spec")
        if rr.get("clusterId") is not None:
            cluster_id = _address(rr["clusterId"], "bgp.routeReflectors.clusterId")
            if cluster_id.version != 4:
                raise InvalidInput("bgp.routeReflectors.clusterId", str(cluster_id),
                                   "must be an IPv4 address")
    if topology == "route-reflector" and not names and not selector:
        raise InvalidInput("bgp.routeReflectors", None,
                           "is required with topology route-reflector (names or selector)")

    peers = []
    for i, item in enumerate(_list(m.get("peers") or [], "bgp.peers")):
        path = f"bgp.peers[{i}]"
        p = _mapping(item, path, ("address", "asNumber", "port", "nodeSelector", "passwordEnv"))
        if "address" not in p:
            raise InvalidInput(f"{path}.address", None, "is required")
        if "asNumber" not in p:
            raise InvalidInput(f"{path}.asNumber", None, "is required")
        address = _address(p["address"], f"{path}.address")
        if address.is_loopback:
            warnings.append(f"{path}: loopback address {address} (fine for a test only)")
        env = None
        if p.get("passwordEnv") is not None:
            env = _str(p["passwordEnv"], f"{path}.passwordEnv")
            if not ENV_NAME.match(env):
                raise InvalidInput(f"{path}.passwordEnv", env,
                                   "is not an environment variable name")
        peer_selector = _labels(p.get("nodeSelector"), f"{path}.nodeSelector")
        peers.append(PeerSpec(
            address,
            _int(p["asNumber"], f"{path}.asNumber", 1, MAX_AS),
            _int(p.get("port", DEFAULT_PORT), f"{path}.port", 1, 65535),
            peer_selector,
            env,
            path,
        ))
    return BgpSpec(as_number, port, topology, names, selector, cluster_id, tuple(peers))
