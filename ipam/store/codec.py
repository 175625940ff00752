"""The stored form of records and leases: JSON objects with the field names of DESIGN.md."""

from __future__ import annotations

import json
# json.dumps' own string quoting, for the JSON the stores spell out by hand
from json.encoder import encode_basestring_ascii as json_string

from ipam.allocation import Lease
from ipam.net import parse_address, parse_cidr
from ipam.pool import Pool
from ipam.state import ClusterRecord, PoolRecord


def record_to_json(record: ClusterRecord) -> str:
    return json.dumps(
        {
            "cluster": record.name,
            "pools": [
                {"name": p.pool.name, "cidr": str(p.pool.cidr),
                 "nodeMaskSize": p.pool.node_mask, "auto": p.auto}
                for p in record.pools
            ],
            "services": [str(c) for c in record.services],
            "servicesAuto": record.services_auto,
            "reserved": [str(c) for c in record.reserved],
            "avoid": [str(c) for c in record.avoid],
            "hosts": [[node, str(addr)] for node, addr in record.hosts],
            "routerIds": [[node, str(addr)] for node, addr in record.router_ids],
            "kept": list(record.kept),
        },
        sort_keys=True,
    )


def record_from_json(text: str | bytes) -> ClusterRecord:
    data = json.loads(text)
    return ClusterRecord(
        name=data["cluster"],
        pools=tuple(
            PoolRecord(Pool(p["name"], parse_cidr(p["cidr"]), p["nodeMaskSize"]), p["auto"])
            for p in data["pools"]
        ),
        services=tuple(parse_cidr(c) for c in data["services"]),
        services_auto=data["servicesAuto"],
        reserved=tuple(parse_cidr(c) for c in data["reserved"]),
        avoid=tuple(parse_cidr(c) for c in data["avoid"]),
        hosts=tuple((node, parse_address(addr)) for node, addr in data["hosts"]),
        router_ids=tuple((node, parse_address(addr)) for node, addr in data.get("routerIds", ())),
        kept=tuple(data.get("kept", ())),
    )


def lease_to_json(lease: Lease) -> str:
    """json.dumps({cluster, pool, node, cidr}, sort_keys=True), byte for byte; spelled out
    because etcd writes one per lease (json.dumps costs three times as much)."""
    q = json_string
    return (f'{{"cidr": {q(str(lease.cidr))}, "cluster": {q(lease.cluster)}, '
            f'"node": {q(lease.node)}, "pool": {q(lease.pool)}}}')


_scan = json.JSONDecoder().raw_decode


def lease_from_json(text: str | bytes) -> Lease:
    """The lease a stored value holds. A read parses every lease of the store: the decoder's
    raw_decode on text takes half the time json.loads takes on bytes; anything but one bare
    JSON value (surrounding whitespace, trailing text) goes to json.loads, which decides."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        data, end = _scan(text)
    except ValueError:
        end = -1
    if end != len(text):
        data = json.loads(text)
    return Lease(data["cluster"], data["pool"], data["node"], parse_cidr(data["cidr"]))
