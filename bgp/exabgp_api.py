"""ExaBGP 5's text API, both ways: the commands the agent writes, the messages it reads.

This is the wire codec and nothing else: no state, no I/O.

Commands (checked against exabgp/reactor/api/command/announce.py of ExaBGP 5.0):
- `announce attributes next-hop self nlri P1 P2 ...` and
  `withdraw attributes next-hop self nlri P1 P2 ...`: one line carries many prefixes of one
  family that share their attributes; ExaBGP answers each line with one `done` (or
  `error` when it cannot parse it). A withdraw of a prefix ExaBGP does not hold is
  answered `done` as well.
- A line may start with `neighbor A , neighbor B ` to reach only those neighbors. Without
  it a line reaches every neighbor, and ExaBGP logs an error per prefix for each neighbor
  without the prefix's family (a dual-stack node has IPv4 and IPv6 sessions), so lines
  name their neighbors whenever some neighbor lacks the family.
- A line is at most 1 MiB (Processes.MAX_COMMAND_SIZE); BATCH prefixes stay far below it.

Pacing: ExaBGP takes at most 50 routes from its API queue a pass of its loop
(reactor/asynchronous.py, ASYNC.LIMIT), and between passes sleeps in poll() for 10 ms
(exabgp.reactor.speed 1.0) unless the pass read a command (reactor/loop.py): a batch of
10,000 routes dribbles out at some 3,500 a second. PING, `version`, is answered at once:
an agent that keeps one in flight while lines are unacknowledged wakes ExaBGP for pass
after pass, so that it works flat out while it has work (some 12,000 routes a second on
two cores) and idles as before. Not the no-op `#`: both are acknowledged out of turn,
ahead of lines still queued, and only the version's reply line (Pong) tells its `done`
from theirs.

Messages (`encoder json`): one JSON object a line, or the acknowledgements `done`/`error`,
or the reply to PING, `exabgp VERSION`.
`type` is `state` (neighbor-changes: `connected`, `up`, `down`), `update` (with
`receive { parsed; update; }`: `announce` {family: {next hop: [{"nlri": P}]}} and
`withdraw` {family: [{"nlri": P}]}, or an end-of-RIB marker), or `notification` with
`shutdown` when ExaBGP stops in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from bgp.model import Address, Network, network_text

# Prefixes per command line: a line of 500 IPv6 /64s is about 13 KB, far below ExaBGP's
# 1 MiB limit, and large enough that ExaBGP spends its time on routes, not on lines.
BATCH = 500

UNICAST = {4: "ipv4 unicast", 6: "ipv6 unicast"}

PING = "version"  # see the top: answered `exabgp VERSION`, then `done`


def _selector(neighbors: Sequence[Address] | None) -> str:
    if neighbors is None:
        return ""
    return " , ".join(f"neighbor {address}" for address in neighbors) + " "


def _lines(
    verb: str, prefixes: Iterable[Network], neighbors: Sequence[Address] | None, batch: int
) -> Iterator[tuple[str, list[Network]]]:
    head = f"{_selector(neighbors)}{verb} attributes next-hop self nlri "
    chunk: list[Network] = []
    for prefix in prefixes:
        chunk.append(prefix)
        if len(chunk) == batch:
            yield head + " ".join(map(network_text, chunk)), chunk
            chunk = []
    if chunk:
        yield head + " ".join(map(network_text, chunk)), chunk


def announce(
    prefixes: Iterable[Network], neighbors: Sequence[Address] | None = None, batch: int = BATCH
) -> Iterator[tuple[str, list[Network]]]:
    """Lines announcing prefixes (all of one family) with next hop self, and what each carries.

    neighbors: the only neighbors a line reaches; None for every neighbor.
    """
    return _lines("announce", prefixes, neighbors, batch)


def withdraw(
    prefixes: Iterable[Network], neighbors: Sequence[Address] | None = None, batch: int = BATCH
) -> Iterator[tuple[str, list[Network]]]:
    """Lines withdrawing prefixes (all of one family), and what each carries."""
    return _lines("withdraw", prefixes, neighbors, batch)


@dataclass(frozen=True, slots=True)
class Ack:
    """ExaBGP's answer to one command line."""

    ok: bool


@dataclass(frozen=True, slots=True)
class Pong:
    """ExaBGP's reply to PING; the next acknowledgement is PING's."""


@dataclass(frozen=True, slots=True)
class PeerState:
    peer: Address
    state: str  # ExaBGP's word: connected, up or down
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    """One received UPDATE: routes (prefix, next hop) announced, prefixes withdrawn."""

    peer: Address
    announced: tuple[tuple[Network, Address], ...]
    withdrawn: tuple[Network, ...]


@dataclass(frozen=True, slots=True)
class Shutdown:
    """ExaBGP stops in order (SIGTERM): it closed its sessions with a Cease."""


Message = Ack | Pong | PeerState | RouteUpdate | Shutdown


def decode(line: str) -> Message | None:
    """One line from ExaBGP; None for what the agent has no use for (end-of-RIB, open, ...).

    Raises ValueError for a line that is neither an acknowledgement nor a JSON object.
    """
    text = line.strip()
    if text == "done":
        return Ack(True)
    if text == "error":
        return Ack(False)
    if text.startswith("exabgp "):
        return Pong()
    message = json.loads(text)
    kind = message.get("type")
    if kind == "notification" and message.get("notification") == "shutdown":
        return Shutdown()
    neighbor = message.get("neighbor")
    if not isinstance(neighbor, dict):
        return None
    if kind == "state":
        peer = ip_address(neighbor["address"]["peer"])
        return PeerState(peer, neighbor["state"], neighbor.get("reason", ""))
    if kind == "update":
        update = neighbor.get("message", {}).get("update")
        if update is None:  # end-of-RIB: "message": {"eor": ...}
            return None
        return _update(ip_address(neighbor["address"]["peer"]), update)
    return None


def _update(peer: Address, update: dict) -> RouteUpdate:
    announced = [
        (ip_network(entry["nlri"]), ip_address(next_hop))
        for family in UNICAST.values()
        for next_hop, entries in update.get("announce", {}).get(family, {}).items()
        for entry in entries
    ]
    withdrawn = [
        ip_network(entry["nlri"])
        for family in UNICAST.values()
        for entry in update.get("withdraw", {}).get(family, [])
    ]
    return RouteUpdate(peer, tuple(announced), tuple(withdrawn))
