"""The speaker's route tables, kept apart from the process that fills them and the wire.

- LocalRib: the node's own prefixes: what the store says it holds (desired) against what
  ExaBGP was told to announce. Changes leave it as a Diff (added, deleted), in batches.
- AdjRibIn: the routes learned from each peer, from ExaBGP's received updates; a peer's
  routes go with its session.
- selected(): one next hop per learned prefix, what a routing table can hold.

Pure: no clocks (callers pass the time), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from bgp.model import Address, Network

T = TypeVar("T")


def network_key(network: Network) -> tuple[int, int, int]:
    """A sort key that orders IPv4 before IPv6 (ipaddress cannot compare across families)."""
    return (network.version, int(network.network_address), network.prefixlen)


@dataclass(frozen=True, slots=True)
class Diff(Generic[T]):
    added: tuple[T, ...] = ()
    deleted: tuple[T, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.deleted)


class Route(NamedTuple):
    prefix: Network
    next_hop: Address
    peer: Address


class LocalRib:
    """The node's prefixes: desired (from the store) and announced (told to ExaBGP).

    take() hands out what changed since the last take() as one Diff, with the time each
    prefix's change was first seen, so that many store events become one batch.
    """

    def __init__(self) -> None:
        self._desired: set[Network] = set()
        self._announced: set[Network] = set()
        self._since: dict[Network, float] = {}  # prefix -> when it started to differ

    @property
    def desired(self) -> frozenset[Network]:
        return frozenset(self._desired)

    def add(self, prefix: Network, now: float) -> None:
        self._desired.add(prefix)
        self._mark(prefix, now)

    def remove(self, prefix: Network, now: float) -> None:
        self._desired.discard(prefix)
        self._mark(prefix, now)

    def replace(self, prefixes: Iterable[Network], now: float) -> None:
        """Desire exactly these prefixes (a fresh read of the store)."""
        wanted = set(prefixes)
        changed = wanted ^ self._desired
        self._desired = wanted
        for prefix in changed:
            self._mark(prefix, now)

    def _mark(self, prefix: Network, now: float) -> None:
        if (prefix in self._desired) != (prefix in self._announced):
            self._since.setdefault(prefix, now)
        else:  # back to what ExaBGP has: nothing to send, nothing to time
            self._since.pop(prefix, None)

    def pending(self) -> bool:
        return bool(self._since)

    def take(self) -> tuple[Diff[Network], Mapping[Network, float]]:
        """What to announce and withdraw now, sorted, and since when each has waited.

        The diff counts as sent: announced becomes desired.
        """
        added = sorted(self._desired - self._announced, key=network_key)
        deleted = sorted(self._announced - self._desired, key=network_key)
        since, self._since = self._since, {}
        self._announced = set(self._desired)
        return Diff(tuple(added), tuple(deleted)), since


class AdjRibIn:
    """Routes learned, per peer: prefix -> next hop."""

    def __init__(self) -> None:
        self._routes: dict[Address, dict[Network, Address]] = {}

    def update(
        self,
        peer: Address,
        announced: Iterable[tuple[Network, Address]],
        withdrawn: Iterable[Network],
    ) -> Diff[Route]:
        """Apply one UPDATE. A route replaced (new next hop) is deleted and added."""
        table = self._routes.setdefault(peer, {})
        added: list[Route] = []
        deleted: list[Route] = []
        for prefix in withdrawn:
            old = table.pop(prefix, None)
            if old is not None:
                deleted.append(Route(prefix, old, peer))
        for prefix, next_hop in announced:
            old = table.get(prefix)
            if old == next_hop:
                continue
            if old is not None:
                deleted.append(Route(prefix, old, peer))
            table[prefix] = next_hop
            added.append(Route(prefix, next_hop, peer))
        if not table:
            del self._routes[peer]
        return Diff(tuple(added), tuple(deleted))

    def drop_peer(self, peer: Address) -> Diff[Route]:
        """The session went down: every route learned over it is gone."""
        table = self._routes.pop(peer, {})
        return Diff((), tuple(Route(prefix, nh, peer) for prefix, nh in table.items()))

    def selected(self, exclude: Iterable[Network] = ()) -> dict[Network, Address]:
        """One next hop per prefix: the route of the lowest peer address wins.

        Learned routes are iBGP routes of equal standing (the cluster's nodes announce
        their own CIDRs); any fixed choice works, a deterministic one keeps routing tables
        of identical nodes identical. exclude: prefixes never to route elsewhere (the
        node's own CIDRs, should a peer announce one back).
        """
        skip = set(exclude)
        chosen: dict[Network, tuple[tuple[int, int], Address]] = {}
        for peer, table in self._routes.items():
            rank = (peer.version, int(peer))
            for prefix, next_hop in table.items():
                if prefix in skip:
                    continue
                best = chosen.get(prefix)
                if best is None or rank < best[0]:
                    chosen[prefix] = (rank, next_hop)
        return {prefix: next_hop for prefix, (_, next_hop) in chosen.items()}


def table_diff(
    current: Mapping[Network, Address], wanted: Mapping[Network, Address]
) -> Diff[tuple[Network, Address]]:
    """Routes (prefix, next hop) to add (or replace) and to delete to turn current into wanted."""
    added = sorted(
        ((p, nh) for p, nh in wanted.items() if current.get(p) != nh),
        key=lambda r: network_key(r[0]),
    )
    deleted = sorted(
        ((p, nh) for p, nh in current.items() if p not in wanted),
        key=lambda r: network_key(r[0]),
    )
    return Diff(tuple(added), tuple(deleted))
