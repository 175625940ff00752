"""Capacity forecasting: how many more nodes each pool holds, for how long, what to change.

Pure: the plan and the store's snapshot in, a dict out (and a rich table for people).

Pods per node. A node CIDR of n addresses holds n - 3 pods for IPv4 and n - 2 for IPv6:
CNI's host-local IPAM (flannel, kubenet, Calico with usePodCidr) skips the network address
and the gateway (the node's bridge), and for IPv4 the broadcast address. The kubelet runs
at most --max-pods pods (110 by default), so pods per node is the smaller of the two.

What to change, for each pool, sized for the nodes expected at the horizon (allocated +
growth x months), and always for at least one node more than the pool holds today:
- a bigger pool: the pool's CIDR widened in place; every lease stays, as the node mask is
  unchanged, but the wider range must be conflict-free (checked like a plan does);
- a smaller node CIDR: a longer nodeMaskSize; more node CIDRs, fewer pods per node, and
  every node is re-addressed (its lease no longer fits, so it is released and re-allocated);
- a new pool in place of the old one: the lowest conflict-free aligned block that holds the
  nodes, in the private ranges (IPv4) or fd00::/8 (IPv6); every node is re-addressed. A
  pool beside the old one would not help: every node takes a CIDR from every pool.
"""

from __future__ import annotations

import bisect
import math
import re
from typing import TYPE_CHECKING

from ipam.conflicts import POOL, Claim, forbidden
from ipam.errors import InvalidInput
from ipam.net import Cidr, parse_cidr
from ipam.pool import IPV6_MAX_WIDTH, MAX_SLOT_BITS, Pool
from ipam.state import Snapshot
from planner.spec import Spec

# rich and the planner are imported where used: the CLI imports this module for its defaults
# below, and a command that never forecasts (`netplan speaker`) should not pay for them.
if TYPE_CHECKING:
    from rich.console import Console

    from planner.plan import Plan

KUBELET_MAX_PODS = 110
DEFAULT_HORIZON_MONTHS = 24
IPV6_SPACE = parse_cidr("fd00::/8")  # unique local addresses: where a new IPv6 pool may go
# Addresses of a node CIDR that are no pod's: network, gateway (+ broadcast for IPv4).
NOT_FOR_PODS = {4: 3, 6: 2}
PER_MONTH = {"month": 1.0, "week": 52 / 12, "year": 1 / 12}
GROWTH = re.compile(r"([0-9]+(?:\.[0-9]+)?)(?:/(month|week|year))?")


def parse_growth(text: str) -> float:
    """Nodes added per month, from `N`, `N/month`, `N/week` or `N/year`."""
    m = GROWTH.fullmatch(text.strip().replace(" ", ""))
    if m is None:
        raise InvalidInput("--growth", text, "is not a growth such as 20/month, 5/week or "
                           "100/year")
    return float(m.group(1)) * PER_MONTH[m.group(2) or "month"]


def pod_addresses(version: int, node_mask: int) -> int:
    """Addresses of one node CIDR that host-local hands to pods."""
    return max(0, (1 << ((32 if version == 4 else 128) - node_mask)) - NOT_FOR_PODS[version])


def pods_per_node(version: int, node_mask: int, max_pods: int) -> int:
    return min(max_pods, pod_addresses(version, node_mask))


def node_cidrs(cidr: Cidr, node_mask: int, reserved: tuple[Cidr, ...]) -> int:
    """How many node CIDRs of /node_mask a pool of `cidr` hands out: all but reserved ones."""
    shift = cidr.bits - node_mask
    spans = sorted(
        ((max(r.first, cidr.first) - cidr.first) >> shift,
         (min(r.last, cidr.last) - cidr.first) >> shift)
        for r in reserved if r.overlaps(cidr)
    )
    blocked, end = 0, -1  # end: the last node CIDR counted as blocked so far
    for a, b in spans:
        a = max(a, end + 1)
        if b >= a:
            blocked += b - a + 1
        end = max(end, b)
    return (1 << (node_mask - cidr.prefixlen)) - blocked


def _width_limit(version: int) -> int:
    """Most bits a node mask may be longer than its pool (ipam.pool's limits)."""
    return IPV6_MAX_WIDTH if version == 6 else MAX_SLOT_BITS


class _Space:
    """The claims a pool range must not overlap, sorted for interval queries."""

    def __init__(self, claims: list[Claim]) -> None:
        probe = Claim(POOL, "", Cidr(4, 0, 0))
        kept = sorted((c for c in claims if forbidden(probe, c)), key=lambda c: c.cidr)
        self.claims = kept
        self.firsts = [(c.cidr.version, c.cidr.first) for c in kept]
        # reach[i]: the highest last address among claims[0..i] of the same family
        self.reach: list[int] = []
        for i, c in enumerate(kept):
            same = i and kept[i - 1].cidr.version == c.cidr.version
            self.reach.append(max(self.reach[-1], c.cidr.last) if same else c.cidr.last)

    def clash(self, cidr: Cidr) -> Claim | None:
        """A claim that cidr overlaps, or None."""
        v = cidr.version
        # a claim starting inside cidr
        i = bisect.bisect_left(self.firsts, (v, cidr.first))
        if i < len(self.claims) and self.firsts[i] <= (v, cidr.last):
            return self.claims[i]
        # a claim starting before cidr and reaching into it
        j = i - 1
        if j >= 0 and self.firsts[j][0] == v and self.reach[j] >= cidr.first:
            return next(c for c in reversed(self.claims[: j + 1])
                        if c.cidr.version == v and c.cidr.last >= cidr.first)
        return None

    def first_free(self, space: Cidr, prefixlen: int) -> Cidr | None:
        """The lowest aligned /prefixlen in space that overlaps no claim."""
        size = 1 << (space.bits - prefixlen)
        value = space.first
        while value + size - 1 <= space.last:
            candidate = Cidr(space.version, value, prefixlen)
            hit = self.clash(candidate)
            if hit is None:
                return candidate
            # jump past the claim, to the next aligned block
            value = max(value + size, ((hit.cidr.last + 1 + size - 1) // size) * size)
        return None


def _supernet(cidr: Cidr, prefixlen: int) -> Cidr:
    host = (1 << (cidr.bits - prefixlen)) - 1
    return Cidr(cidr.version, cidr.value & ~host, prefixlen)


def _change(kind: str, field: str, value: object, capacity: int, pods: int,
            consequence: str) -> dict:
    return {"change": kind, "set": {field: value}, "capacity": capacity,
            "podsPerNode": pods, "consequence": consequence}


def _impossible(kind: str, why: str) -> dict:
    return {"change": kind, "set": None, "capacity": None, "podsPerNode": None,
            "consequence": why}


def _bigger_pool(pool: Pool, field: str, target: int, reserved, space: _Space,
                 pods: int) -> dict:
    from planner.plan import PRIVATE_RANGES

    kind = "bigger pool"
    c = pool.cidr
    for prefixlen in range(c.prefixlen - 1, -1, -1):
        if pool.node_mask - prefixlen > _width_limit(c.version):
            break
        wider = _supernet(c, prefixlen)
        capacity = node_cidrs(wider, pool.node_mask, reserved)
        if capacity < target:
            continue
        notes = ["every node keeps its CIDR"]
        hit = space.clash(wider)
        if hit is not None:
            notes.append(f"but it overlaps {hit.describe()}: not possible as it stands")
        elif c.version == 4 and any(r.contains(c) for r in PRIVATE_RANGES) and not any(
                r.contains(wider) for r in PRIVATE_RANGES):
            notes.append("but it reaches outside the private ranges (RFC 1918)")
        return _change(kind, f"{field}.cidr", str(wider), capacity, pods, ", ".join(notes))
    return _impossible(kind, f"no wider pool holds {target:,} /{pool.node_mask}s "
                             f"(at most {_width_limit(c.version)} bits between pool and node "
                             "mask)")


def _smaller_node_cidrs(pool: Pool, field: str, target: int, reserved, max_pods: int,
                        pods_now: int) -> dict:
    kind = "smaller node CIDRs"
    c = pool.cidr
    limit = min(c.bits, c.prefixlen + _width_limit(c.version))
    for mask in range(pool.node_mask + 1, limit + 1):
        pods = pods_per_node(c.version, mask, max_pods)
        if pods == 0:
            break
        capacity = node_cidrs(c, mask, reserved)
        if capacity < target:
            continue
        notes = ["every node is re-addressed (its lease no longer fits: released, "
                 "allocated afresh)"]
        if pods < pods_now:
            notes.append(f"pods per node fall from {pods_now} to {pods}")
            if pods < max_pods:
                notes.append(f"kubelet --max-pods must be at most {pods}")
        return _change(kind, f"{field}.nodeMaskSize", mask, capacity, pods, "; ".join(notes))
    return _impossible(kind, f"no longer node mask in {c} holds {target:,} node CIDRs with "
                             "room for pods")


def _new_pool(pool: Pool, field: str, target: int, space: _Space, pods: int) -> dict:
    from planner.plan import PRIVATE_RANGES

    kind = "new pool"
    c = pool.cidr
    bits = max(0, math.ceil(math.log2(target)))
    if bits > _width_limit(c.version) or pool.node_mask - bits < 0:
        return _impossible(kind, f"no pool holds {target:,} /{pool.node_mask}s")
    prefixlen = pool.node_mask - bits
    areas = PRIVATE_RANGES if c.version == 4 else (IPV6_SPACE,)
    for area in areas:
        if area.prefixlen > prefixlen:
            continue
        found = space.first_free(area, prefixlen)
        if found is not None:
            return _change(
                kind, f"{field}.cidr", str(found), 1 << bits, pods,
                f"in place of {c}: every node is re-addressed (a pool beside it adds no room "
                "for nodes: every node takes a CIDR from every pool)",
            )
    where = ", ".join(str(a) for a in areas)
    return _impossible(kind, f"no conflict-free /{prefixlen} is left in {where}")


def forecast(spec: Spec, plan: Plan, snapshot: Snapshot, growth: float,
             horizon: int = DEFAULT_HORIZON_MONTHS, max_pods: int = KUBELET_MAX_PODS) -> dict:
    """The `capacity -o json` object; growth in nodes a month."""
    from planner.plan import record_claims

    claims = list(record_claims(plan.record))
    for name, state in snapshot.clusters.items():
        if name != plan.cluster and state.record is not None:
            claims += record_claims(state.record)
    reserved = plan.record.reserved
    pools = []
    # plan.usage follows the spec's pool order
    for p, u in zip(spec.pools, plan.usage):
        pool, field = u.pool, p.field
        # The pool's own claim is no obstacle to widening it in place.
        space = _Space([c for c in claims if not (c.kind == POOL and c.cidr == pool.cidr
                                                  and c.cluster == plan.cluster)])
        fit = u.capacity - u.allocated
        v = pool.cidr.version
        pods = pods_per_node(v, pool.node_mask, max_pods)
        target = max(math.ceil(u.allocated + growth * horizon), u.capacity + 1)
        pools.append({
            "name": pool.name,
            "cidr": str(pool.cidr),
            "nodeMaskSize": pool.node_mask,
            "capacity": u.capacity,
            "allocated": u.allocated,
            "nodesThatFit": fit,
            "monthsLeft": round(fit / growth, 1) if growth > 0 else None,
            "addressesPerNode": 1 << (pool.cidr.bits - pool.node_mask),
            "podAddressesPerNode": pod_addresses(v, pool.node_mask),
            "podsPerNode": pods,
            "changesSizedFor": target,
            "changes": [
                _bigger_pool(pool, field, target, reserved, space, pods),
                _smaller_node_cidrs(pool, field, target, reserved, max_pods, pods),
                _new_pool(pool, field, target, _Space(claims), pods),
            ],
        })
    months = [p["monthsLeft"] for p in pools if p["monthsLeft"] is not None]
    return {
        "cluster": plan.cluster,
        "growthPerMonth": growth,
        "horizonMonths": horizon,
        "maxPods": max_pods,
        "nodes": len(plan.nodes),
        # every node takes a CIDR from every pool: the fullest pool decides
        "nodesThatFit": min(p["nodesThatFit"] for p in pools),
        "monthsLeft": min(months) if months else None,
        "pools": pools,
    }


def capacity_table(data: dict, console: Console) -> None:
    from rich.table import Table

    months = data["monthsLeft"]
    when = ("never, at no growth" if months is None
            else f"in {months:g} months at {data['growthPerMonth']:g} nodes a month")
    console.print(f"[bold]cluster {data['cluster']}[/bold] — {data['nodes']} nodes; room for "
                  f"{data['nodesThatFit']:,} more; full {when}")
    table = Table("pool", "cidr", "node mask", "capacity", "allocated", "fit", "months",
                  "pods/node", box=None, header_style="bold")
    for p in data["pools"]:
        table.add_row(p["name"], p["cidr"], f"/{p['nodeMaskSize']}", f"{p['capacity']:,}",
                      f"{p['allocated']:,}", f"{p['nodesThatFit']:,}",
                      "-" if p["monthsLeft"] is None else f"{p['monthsLeft']:g}",
                      f"{p['podsPerNode']} of {p['podAddressesPerNode']:,} addresses")
    console.print(table)
    console.print(f"pods per node: a node CIDR's addresses less network, gateway (and IPv4 "
                  f"broadcast), at most --max-pods {data['maxPods']}", markup=False)
    for p in data["pools"]:
        console.print(f"[bold]{p['name']}[/bold]: to hold {p['changesSizedFor']:,} nodes "
                      f"({data['horizonMonths']} months ahead, at least one more than today)")
        changes = Table("change", "set", "capacity", "pods/node", "consequence", box=None,
                        header_style="bold")
        for c in p["changes"]:
            setting = "-" if c["set"] is None else ", ".join(
                f"{k} = {v}" for k, v in c["set"].items())
            changes.add_row(c["change"], setting,
                            "-" if c["capacity"] is None else f"{c['capacity']:,}",
                            "-" if c["podsPerNode"] is None else str(c["podsPerNode"]),
                            c["consequence"])
        console.print(changes)
