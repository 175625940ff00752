"""The JSON Schema (draft 2020-12) of the spec, for editors to validate and complete it.

It says what planner/spec.py accepts, as far as a schema can: keys, types, names, address
and CIDR syntax, ranges, one address per family. What needs arithmetic or the whole spec
stays with `netplan plan`: host bits set, a node mask against its pool's prefix length,
duplicate names and addresses, references between fields. Patterns use ASCII classes
only ([0-9], not \\d) and tolerate the whitespace around a value that the loader strips.
"""

from __future__ import annotations

from planner.spec import (
    DEFAULT_AS, DEFAULT_PORT, DEFAULT_SERVICES, MAX_AS, PRESETS, SERVICES_MAX_PREFIX,
    SERVICES_MIN_PREFIX, TOPOLOGIES,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_H = r"[0-9a-fA-F]{1,4}"
_IPV6 = "(" + "|".join([
    rf"({_H}:){{7}}{_H}",
    rf"({_H}:){{1,7}}:",
    rf"({_H}:){{1,6}}:{_H}",
    rf"({_H}:){{1,5}}(:{_H}){{1,2}}",
    rf"({_H}:){{1,4}}(:{_H}){{1,3}}",
    rf"({_H}:){{1,3}}(:{_H}){{1,4}}",
    rf"({_H}:){{1,2}}(:{_H}){{1,5}}",
    rf"{_H}:(:{_H}){{1,6}}",
    rf":((:{_H}){{1,7}}|:)",
    rf"({_H}:){{6}}{_IPV4}",
    rf"({_H}:){{1,5}}:{_IPV4}",
    rf"::(({_H}:){{0,5}}){_IPV4}",
]) + ")"
# Prefix lengths as the loader reads them: one to three ASCII digits, leading zeros allowed.
_LEN4 = r"(0?(3[0-2]|[12][0-9])|0{0,2}[0-9])"
_LEN6 = r"(12[0-8]|1[01][0-9]|0?[1-9][0-9]|0{0,2}[0-9])"


def _whole(regex: str) -> str:
    return rf"^\s*({regex})\s*$"


def _prefix_range(lo: int, hi: int) -> str:
    """A regex for the prefix lengths lo..hi, each as its plain decimal."""
    return "(" + "|".join(str(n) for n in range(hi, lo - 1, -1)) + ")"


IPV4_ADDRESS = {"type": "string", "pattern": _whole(_IPV4)}
IPV6_ADDRESS = {"type": "string", "pattern": _whole(_IPV6)}
IPV4_CIDR = {"type": "string", "pattern": _whole(rf"{_IPV4}/{_LEN4}")}
IPV6_CIDR = {"type": "string", "pattern": _whole(rf"{_IPV6}/{_LEN6}")}


def _nullable(schema: dict) -> dict:
    """schema, or null (YAML's empty value, which the loader reads as omitted).

    A second type keeps editors' messages precise where an anyOf would only say that no
    branch matched; the type's keywords leave null alone.
    """
    if "type" in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [{"type": "null"}, schema]}


def _one_per_family(items: str) -> dict:
    """An array of `items` with at most one IPv4 and one IPv6 entry."""
    return {
        "type": "array", "minItems": 1, "maxItems": 2, "items": {"$ref": f"#/$defs/{items}"},
        "allOf": [{"contains": {"$ref": f"#/$defs/{items}4"}, "minContains": 0,
                   "maxContains": 1},
                  {"contains": {"$ref": f"#/$defs/{items}6"}, "minContains": 0,
                   "maxContains": 1}],
    }


def spec_schema() -> dict:
    services4 = {"type": "string", "pattern": _whole(
        rf"{_IPV4}/0?{_prefix_range(SERVICES_MIN_PREFIX[4], SERVICES_MAX_PREFIX[4])}")}
    services6 = {"type": "string", "pattern": _whole(
        rf"{_IPV6}/{_prefix_range(SERVICES_MIN_PREFIX[6], SERVICES_MAX_PREFIX[6])}")}
    defs = {
        "address4": IPV4_ADDRESS,
        "address6": IPV6_ADDRESS,
        "address": {"anyOf": [{"$ref": "#/$defs/address4"}, {"$ref": "#/$defs/address6"}],
                    "description": "An IPv4 or IPv6 address."},
        "cidr4": IPV4_CIDR,
        "cidr6": IPV6_CIDR,
        "cidr": {"anyOf": [{"$ref": "#/$defs/cidr4"}, {"$ref": "#/$defs/cidr6"}],
                 "description": "A network in CIDR notation, no host bits set."},
        "cidrs": _nullable({"type": "array", "items": {"$ref": "#/$defs/cidr"}}),
        "services4": services4,
        "services6": services6,
        "services": {
            "anyOf": [{"$ref": "#/$defs/services4"}, {"$ref": "#/$defs/services6"}],
            "description": f"A services range: IPv4 /{SERVICES_MIN_PREFIX[4]} to "
                           f"/{SERVICES_MAX_PREFIX[4]}, IPv6 /{SERVICES_MIN_PREFIX[6]} to "
                           f"/{SERVICES_MAX_PREFIX[6]}.",
        },
        "name": {"type": "string", "maxLength": 63,
                 "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                 "description": "Lower-case letters, digits and '-', at most 63 characters."},
        "labels": _nullable({
            "type": "object",
            "propertyNames": {
                "maxLength": 316,
                "pattern": "^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?"
                           "[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
            },
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
            "description": "Label names to values (strings; YAML true/1 are read as "
                           "\"true\"/\"1\").",
        }),
        "asNumber": {"type": "integer", "minimum": 1, "maximum": MAX_AS},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "pool": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"$ref": "#/$defs/name", "description": "default pods-v4 / pods-v6"},
                "cidr": {"anyOf": [{"const": "auto"}, {"type": "null"}, {"$ref": "#/$defs/cidr"}],
                         "description": "The pool's range; \"auto\" or omitted: chosen "
                                        "conflict-free (IPv4 only).",
                         "default": "auto"},
                "nodeMaskSize": {"type": "integer", "minimum": 0, "maximum": 128,
                                 "description": "Prefix length of each node's CIDR; default "
                                                "the preset's (IPv4), 64 (IPv6)."},
            },
            # an IPv4 pool's node mask is at most /32
            "if": {"required": ["cidr"], "properties": {"cidr": {"$ref": "#/$defs/cidr4"}}},
            "then": {"properties": {"nodeMaskSize": {"maximum": 32}}},
        },
        "node": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 253,
                         "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                         "description": "The Kubernetes node name."},
                "address": {"$ref": "#/$defs/address",
                            "description": "The node's own address: BGP router id and "
                                           "peering address."},
                "addresses": {**_one_per_family("address"),
                              "description": "One address per family, for dual-stack BGP."},
                "routerId": {"$ref": "#/$defs/address4",
                             "description": "Required when the node has no IPv4 address."},
                "labels": {"$ref": "#/$defs/labels"},
                "podCIDRs": {"$ref": "#/$defs/cidrs",
                             "description": "Pinned CIDRs, at most one per pool."},
                "bgpPort": _nullable({"type": "integer", "minimum": 1, "maximum": 65535}),
            },
            "oneOf": [{"required": ["address"]}, {"required": ["addresses"]}],
            # the router id: given, or the node's IPv4 address
            "anyOf": [
                {"required": ["routerId"]},
                {"required": ["address"], "properties": {"address": {"$ref": "#/$defs/address4"}}},
                {"required": ["addresses"],
                 "properties": {"addresses": {"contains": {"$ref": "#/$defs/address4"}}}},
            ],
        },
        "peer": {
            "type": "object",
            "additionalProperties": False,
            "required": ["address", "asNumber"],
            "properties": {
                "address": {"$ref": "#/$defs/address"},
                "asNumber": {"$ref": "#/$defs/asNumber"},
                "port": {"$ref": "#/$defs/port", "default": DEFAULT_PORT},
                "nodeSelector": {"$ref": "#/$defs/labels",
                                 "description": "Nodes that peer with it; omitted: every node."},
                "passwordEnv": _nullable({"type": "string",
                                          "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                                          "description": "Environment variable holding the "
                                                         "MD5 password."}),
            },
        },
    }
    reflectors = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "names": _nullable({"type": "array", "items": {"type": "string"}}),
            "selector": {"$ref": "#/$defs/labels"},
            "clusterId": _nullable({"$ref": "#/$defs/address4"}),
        },
    }
    bgp = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "asNumber": {"$ref": "#/$defs/asNumber", "default": DEFAULT_AS},
            "port": {"$ref": "#/$defs/port", "default": DEFAULT_PORT},
            "topology": {"enum": list(TOPOLOGIES), "default": "full-mesh"},
            "routeReflectors": _nullable(reflectors),
            "peers": _nullable({"type": "array", "items": {"$ref": "#/$defs/peer"}}),
        },
        # route-reflector needs reflectors: names or a selector
        "if": {"required": ["topology"], "properties": {"topology": {"const": "route-reflector"}}},
        "then": {
            "required": ["routeReflectors"],
            "properties": {"routeReflectors": {
                "type": "object",
                "anyOf": [
                    {"required": ["names"],
                     "properties": {"names": {"type": "array", "minItems": 1}}},
                    {"required": ["selector"],
                     "properties": {"selector": {"type": "object", "minProperties": 1}}},
                ],
            }},
        },
    }
    return {
        "$schema": DRAFT,
        "title": "netplan spec",
        "description": "A cluster's address plan and BGP topology (netplan plan -f SPEC).",
        "type": "object",
        "additionalProperties": False,
        "required": ["cluster"],
        "properties": {
            "cluster": {"$ref": "#/$defs/name", "description": "The cluster's name."},
            "preset": {"enum": list(PRESETS), "default": "flannel"},
            "pools": _nullable({"type": "array", "minItems": 1,
                                "items": {"$ref": "#/$defs/pool"}}),
            "services": _nullable({
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "cidr": {"$ref": "#/$defs/services", "default": DEFAULT_SERVICES},
                    "cidrs": _one_per_family("services"),
                },
                "not": {"type": "object", "required": ["cidr", "cidrs"]},
            }),
            "reserved": {"$ref": "#/$defs/cidrs",
                         "description": "Ranges inside pools never handed to a node."},
            "avoid": {"$ref": "#/$defs/cidrs",
                      "description": "Networks used elsewhere: no pool or services range "
                                     "may overlap them."},
            "nodes": _nullable({"type": "array", "items": {"$ref": "#/$defs/node"}}),
            "bgp": _nullable(bgp),
        },
        "$defs": defs,
    }
