"""The sessions of a node as the speaker reports them.

ExaBGP runs each session's BGP state machine; through `neighbor-changes` it reports three
of its transitions: TCP connected, established (`up`) and down. The speaker keeps the last
one per configured peer, under the names /status shows:

    idle         nothing heard since the speaker started (never connected)
    connected    TCP is up, OPEN messages are being exchanged
    established  the session is up: routes flow
    down         the session ended (or ExaBGP stopped); ExaBGP keeps retrying
"""

from __future__ import annotations

from collections.abc import Iterable

from bgp.model import Address

IDLE = "idle"
CONNECTED = "connected"
ESTABLISHED = "established"
DOWN = "down"
STATES = (IDLE, CONNECTED, ESTABLISHED, DOWN)

# ExaBGP's words (exabgp/reactor/api/response/json.py) -> ours
FROM_EXABGP = {"connected": CONNECTED, "up": ESTABLISHED, "down": DOWN}


def from_exabgp(state: str) -> str:
    """Our name of an ExaBGP state; an unknown word (a later ExaBGP) reads as connected:
    the session exists but is not known to be up."""
    return FROM_EXABGP.get(state, CONNECTED)


class PeerTable:
    """The configured peers of a node, in topology order, and each one's last state."""

    def __init__(self, peers: Iterable[Address]) -> None:
        self._states: dict[Address, str] = {peer: IDLE for peer in peers}

    def set(self, peer: Address, state: str) -> bool:
        """Record a state; False for a peer that is not configured (ignored) or no change."""
        if peer not in self._states or self._states[peer] == state:
            return False
        self._states[peer] = state
        return True

    def all_down(self) -> list[Address]:
        """ExaBGP is gone: every session that existed is down. The peers that changed."""
        changed = [peer for peer, state in self._states.items() if state not in (IDLE, DOWN)]
        for peer in changed:
            self._states[peer] = DOWN
        return changed

    def items(self) -> list[tuple[Address, str]]:
        return list(self._states.items())
