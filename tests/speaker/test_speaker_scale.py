"""20,000 routes through one speaker to BIRD, without stalling.

A node holds one CIDR per pool, so 20,000 routes are 20,000 leases of one node in 20,000
synthetic pools, written straight into the SQLite store (a store keeps whatever leases
it is given; only the planner knows pools). The speaker's whole path runs as in
production: snapshot, watch, batched announcements through ExaBGP, BIRD.
"""

from __future__ import annotations

import time

from speaker_harness import (
    Bird,
    Node,
    Processes,
    Speaker,
    bird_peer_config,
    free_port,
    wait_for,
    write_spec,
)

from ipam.allocation import Lease
from ipam.net import parse_cidr
from ipam.state import ClusterRecord, ClusterWrite
from ipam.store.sqlite import SQLiteStore

ROUTES = 20_000


def synthetic_leases(count: int, node: str = "node-a") -> list[Lease]:
    """count /24s of 10.128.0.0/9 for node, one per pool p00000, p00001, ..."""
    return [
        Lease("demo", f"p{i:05d}", node, parse_cidr(f"10.{128 + i // 256}.{i % 256}.0/24"))
        for i in range(count)
    ]


def fill_store(path: str, leases: list[Lease]) -> SQLiteStore:
    store = SQLiteStore(path)
    store.update(lambda _: (ClusterWrite("demo", ClusterRecord("demo"), create=tuple(leases)),
                            None))
    return store


def test_20000_routes_reach_bird_without_stalling(processes: Processes, bird: Bird,
                                                  record_property):
    a = Node("node-a", "127.0.0.2")
    port = free_port("127.0.0.1")
    spec = write_spec(processes.tmp / "a.yaml", [a], peers=[("127.0.0.1", port)])
    leases = synthetic_leases(ROUTES)
    store = fill_store(str(processes.tmp / "netplan.db"), leases)
    bird.start(bird_peer_config("127.0.0.1", port, [a]))

    def diagnose() -> str:
        return f"{bird.birdc('show', 'protocols', 'all')}\n{bird.count()}\n{processes.logs()}"

    start = time.monotonic()
    speaker = Speaker(processes, spec, "node-a", str(processes.tmp / "netplan.db")).start()
    wait_for(lambda: bird.established("node_a"), "session", diagnose, interval=0.02)
    established = time.monotonic() - start
    wait_for(lambda: bird.count() == ROUTES, f"{ROUTES} routes at BIRD", diagnose,
             timeout=120, interval=0.2)
    done = time.monotonic() - start
    assert bird.established("node_a"), diagnose()
    assert len(speaker.status()["announced"]) == ROUTES
    rss_mib = speaker.tree_rss_kib() / 1024

    # not stalled: a change still travels at once, and ExaBGP acknowledged every line
    gone = leases[ROUTES // 2]
    store.update(lambda _: (ClusterWrite("demo", ClusterRecord("demo"), delete=(gone,)), None))
    changed = wait_for(lambda: bird.count() == ROUTES - 1, "one withdrawal", diagnose,
                       timeout=10, interval=0.01)
    assert str(gone.cidr) not in bird.birdc("show", "route", "for", str(gone.cidr).split("/")[0])
    wait_for(lambda: speaker.metrics().get("netplan_speaker_announce_latency_seconds_count")
             == ROUTES + 1, "every prefix acknowledged", diagnose)
    assert speaker.metrics()["netplan_speaker_exabgp_command_errors_total"] == 0

    record_property("announce_20000_s", round(done - established, 2))
    print(f"\n{ROUTES} routes: session after {established:.2f} s, all at BIRD after "
          f"{done:.2f} s ({done - established:.2f} s after the session); one withdrawal "
          f"then took {changed * 1000:.0f} ms; supervisor+ExaBGP+agent RSS {rss_mib:.0f} MiB")
