"""What the commands print: one dict per result (JSON and YAML), and tables for people."""

from __future__ import annotations

import json
import yaml
from rich.console import Console

from ipam.allocation import PoolUsage
from ipam.net import Cidr
from ipam.pool import PoolMap
from ipam.state import ClusterState
from planner.plan import Plan

FORMATS = ("table", "json", "yaml")


def services_dict(cidrs: tuple[Cidr, ...]) -> dict:
    if not cidrs:
        return {"cidr": None, "cidrs": [], "kubernetesIP": None, "dnsIP": None}
    first = cidrs[0]
    return {
        "cidr": str(first),
        "cidrs": [str(c) for c in cidrs],
        "kubernetesIP": str(first.address(1)),
        "dnsIP": str(first.address(10)),
    }


def _pool_dict(u: PoolUsage) -> dict:
    mask = u.pool.node_mask
    return {
        "name": u.pool.name,
        "cidr": str(u.pool.cidr),
        "nodeMaskSize": mask,
        "capacity": u.capacity,
        "allocated": u.allocated,
        "headroom": u.capacity - u.allocated,
        # Addresses per node CIDR, as a pods-per-node ceiling (kubelet's default is 110).
        "addressesPerNode": 1 << (u.pool.cidr.bits - mask) if u.pool.cidr.bits - mask < 63
        else None,
    }


def _node_dict(name: str, router_id, addresses, pod_cidrs) -> dict:
    # `address` is the router id's address (DESIGN.md section 5), an IPv4 address even for
    # a node that peers over IPv6 only.
    shown = router_id if router_id is not None else (addresses[0] if addresses else None)
    return {
        "name": name,
        "address": None if shown is None else str(shown),
        "addresses": [str(a) for a in addresses],
        "podCIDRs": [str(c) for c in pod_cidrs],
    }


def plan_dict(plan: Plan) -> dict:
    return {
        "cluster": plan.cluster,
        "pools": [_pool_dict(u) for u in plan.usage],
        "services": services_dict(plan.services),
        "nodes": [_node_dict(n.name, n.router_id, n.addresses, n.pod_cidrs) for n in plan.nodes],
        "changes": [
            {"action": c.action, "node": c.node, "pool": c.pool, "cidr": str(c.cidr)}
            | ({"reason": c.reason} if c.reason else {})
            for c in plan.changes
        ],
        "chosen": [{"field": c.field, "cidr": str(c.cidr), "reason": c.reason}
                   for c in plan.chosen],
        "warnings": list(plan.warnings),
    }


def cluster_dict(name: str, state: ClusterState) -> dict:
    """`show --cluster`: the stored state in the shape of a plan with no changes."""
    record = state.record
    pools = record.pools if record else ()
    usage = []
    for p in pools:
        pmap = PoolMap(p.pool, record.reserved)
        count = sum(1 for lease in state.leases if lease.pool == p.pool.name)
        usage.append(PoolUsage(p.pool, pmap.capacity, count))
    order = {p.pool.name: i for i, p in enumerate(pools)}
    addresses: dict[str, list] = {}
    router_ids = dict(record.router_ids) if record else {}
    for node, addr in record.hosts if record else ():
        addresses.setdefault(node, []).append(addr)
    cidrs: dict[str, list] = {}
    for lease in sorted(state.leases, key=lambda x: (x.node, order.get(x.pool, len(order)))):
        cidrs.setdefault(lease.node, []).append(lease.cidr)
    names = list(addresses) + sorted(set(cidrs) - set(addresses))
    return {
        "cluster": name,
        "pools": [_pool_dict(u) for u in usage],
        "services": services_dict(record.services if record else ()),
        "nodes": [_node_dict(n, router_ids.get(n), addresses.get(n, ()), cidrs.get(n, ()))
                  for n in names],
        "changes": [],
        "chosen": [],
        "warnings": [] if record else [f"cluster {name} has leases but no stored record"],
    }


def emit(data: dict, fmt: str, console: Console, table: callable) -> None:
    if fmt == "json":
        console.file.write(json.dumps(data, indent=2) + "\n")
    elif fmt == "yaml":
        console.file.write(yaml.safe_dump(data, sort_keys=False))
    else:
        table(data, console)


def columns(console: Console, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Rows in aligned columns under a bold header. Written as plain text, not as a rich
    Table: rich measures and wraps every cell, and took 15 s for a 65,536-node cluster
    (0.1 s this way); a line too wide for the terminal wraps as any line does."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        return " " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    console.print(line(header), style="bold", markup=False, highlight=False, soft_wrap=True)
    console.file.write("".join(line(r) + "\n" for r in rows))


def plan_table(data: dict, console: Console, title: str = "") -> None:
    console.print(f"[bold]cluster {data['cluster']}[/bold]{title}")
    columns(console, ("pool", "cidr", "node mask", "capacity", "allocated", "headroom"),
            [(p["name"], p["cidr"], f"/{p['nodeMaskSize']}", str(p["capacity"]),
              str(p["allocated"]), str(p["headroom"])) for p in data["pools"]])
    s = data["services"]
    if s["cidr"]:
        console.print(f"services {', '.join(s['cidrs'])}  kubernetes {s['kubernetesIP']}  "
                      f"dns {s['dnsIP']}")
    if data["nodes"]:
        columns(console, ("node", "address", "pod CIDRs"),
                [(n["name"], ", ".join(n["addresses"]) or "-", ", ".join(n["podCIDRs"]) or "-")
                 for n in data["nodes"]])
    changes = [c for c in data["changes"] if c["action"] != "keep"]
    if changes:
        columns(console, ("change", "node", "pool", "cidr", "why"),
                [(c["action"], c["node"], c["pool"], c["cidr"], c.get("reason", ""))
                 for c in changes])
    elif "changes" in data and title:
        console.print("no changes: the store matches the spec")
    if "bgp" in data:
        b = data["bgp"]
        console.print(f"bgp {b['topology']}: {b['sessions']} sessions", markup=False)
    for c in data["chosen"]:
        console.print(f"chosen {c['field']} = {c['cidr']}: {c['reason']}")
    for w in data["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")


def clusters_table(data: dict, console: Console) -> None:
    if not data["clusters"]:
        console.print("the store holds no cluster")
    for cluster in data["clusters"]:
        plan_table(cluster, console)


def check_table(data: dict, console: Console) -> None:
    console.print(f"checked {data['clusters']} clusters, {data['leases']} leases")
    for p in data["problems"]:
        console.print(f"[red]problem:[/red] {p['kind']}: {p['message']}")
    for w in data["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if not data["problems"]:
        console.print("no problems found")


def topology_table(data: dict, console: Console) -> None:
    console.print(f"[bold]cluster {data['cluster']}[/bold] — AS {data['asNumber']}, "
                  f"{data['topology']}, {data['sessions']} sessions")
    if data.get("explanation"):
        console.print(data["explanation"], markup=False)
    rows = []
    for node in data["nodes"]:
        first = True
        for peer in node["peers"] or [None]:
            cells = (node["name"], node["address"], node["role"]) if first else ("", "", "")
            first = False
            if peer is None:
                rows.append((*cells, "-", "", "", ""))
                continue
            rows.append((*cells, peer["name"] or "(external)",
                         f"{peer['address']}:{peer['port']}", peer["kind"],
                         "yes" if peer["passive"] else ""))
    columns(console, ("node", "address", "role", "peer", "peer address", "kind", "passive"),
            rows)
