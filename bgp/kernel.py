"""Learned routes in the routing table of the network namespace the speaker runs in.

Through iproute2 (`ip`), one `ip -batch` run per change set: pyroute2 is no dependency,
and one process per batch, not per route, keeps thousands of routes cheap.

Every route carries its own protocol number, PROTOCOL, so that netplan's routes are told
apart from the kernel's, BIRD's (12) and FRR's (186): reading, replacing and flushing touch
those routes only. A route the speaker installed outlives an ExaBGP crash (the next agent
adopts it, see bgp/agent.py) and is flushed when the speaker stops in order.
"""

from __future__ import annotations

import json
import logging
import subprocess
from ipaddress import ip_address, ip_network

from bgp.model import Address, Network
from bgp.rib import Diff

log = logging.getLogger(__name__)

PROTOCOL = 250  # unassigned in iproute2's rt_protos: netplan's own
TIMEOUT_S = 30.0


class KernelRoutes:
    def __init__(self, ip: str = "ip", protocol: int = PROTOCOL) -> None:
        self._ip = ip
        self._protocol = protocol

    def read(self) -> dict[Network, Address]:
        """The routes of our protocol in the main table, IPv4 and IPv6: prefix -> next hop."""
        routes: dict[Network, Address] = {}
        for family in ("-4", "-6"):
            result = subprocess.run(
                [self._ip, "-j", family, "route", "show", "proto", str(self._protocol)],
                capture_output=True, text=True, timeout=TIMEOUT_S, check=True,
            )
            for entry in json.loads(result.stdout or "[]"):
                if "gateway" in entry and entry.get("dst", "default") != "default":
                    routes[ip_network(entry["dst"])] = ip_address(entry["gateway"])
        return routes

    def apply(self, diff: Diff[tuple[Network, Address]]) -> bool:
        """Replace (add) and delete routes; False when `ip` refused some (it logs which)."""
        lines = [f"route del {prefix} proto {self._protocol}" for prefix, _ in diff.deleted]
        lines += [
            f"route replace {prefix} via {next_hop} proto {self._protocol}"
            for prefix, next_hop in diff.added
        ]
        if not lines:
            return True
        return self._batch(lines)

    def flush(self) -> None:
        """Remove every route of our protocol (the speaker stops in order)."""
        for family in ("-4", "-6"):
            subprocess.run(
                [self._ip, family, "route", "flush", "proto", str(self._protocol)],
                capture_output=True, timeout=TIMEOUT_S, check=False,
            )

    def _batch(self, lines: list[str]) -> bool:
        # -force: go on past a refused route (a next hop not on any connected network)
        result = subprocess.run(
            [self._ip, "-force", "-batch", "-"], input="\n".join(lines) + "\n",
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )
        if result.returncode != 0:
            log.warning("ip refused some routes: %s", " | ".join(result.stderr.split("\n")[:6]))
        return result.returncode == 0
