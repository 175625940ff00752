"""`netplan speaker` on an etcd store: the watch, an etcd outage, and TTL leases.

A real etcd (tests/etcd/etcd_server.py) on a free loopback port, BIRD as every node's
external iBGP peer, as in test_speaker_bird.py.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from speaker_harness import (
    Bird,
    Node,
    Processes,
    Speaker,
    bird_peer_config,
    free_port,
    netplan,
    timed,
    wait_for,
    write_spec,
)

from ipam.store import StoreOptions, open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "etcd"))
from etcd_server import EtcdCluster  # noqa: E402

A, B = "10.244.0.0/24", "10.244.1.0/24"
TIMEOUT = ("--store-timeout", "1")  # the store counts as down after 1 s without an answer


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd").start()
    try:
        yield cluster
    finally:
        cluster.stop()


class EtcdSetup:
    def __init__(self, processes: Processes, bird: Bird, etcd: EtcdCluster,
                 *extra: str) -> None:
        tmp = processes.tmp
        self.processes, self.bird, self.etcd = processes, bird, etcd
        self.a, self.b = Node("node-a", "127.0.0.2"), Node("node-b", "127.0.0.3")
        port = free_port("127.0.0.1")
        self.spec = write_spec(tmp / "ab.yaml", [self.a, self.b], peers=[("127.0.0.1", port)])
        netplan("allocate", "-f", str(self.spec), "--store", etcd.url)
        bird.start(bird_peer_config("127.0.0.1", port, [self.a, self.b]))
        self.speakers = {
            n.name: Speaker(processes, self.spec, n.name, etcd.url, *TIMEOUT, *extra).start()
            for n in (self.a, self.b)
        }

    def expect(self, routes: dict[str, str], what: str, timeout: float = 30) -> float:
        wanted = {prefix: [next_hop] for prefix, next_hop in routes.items()}
        return wait_for(lambda: self.bird.routes() == wanted, what, self.diagnose,
                        timeout=timeout, interval=0.005)

    def diagnose(self) -> str:
        statuses = "\n".join(f"{n}: {s.status()}" for n, s in self.speakers.items())
        return f"BIRD routes: {self.bird.routes()}\n{statuses}\n{self.processes.logs()}"


def test_etcd_watch_moves_routes_in_milliseconds(processes, bird, etcd):
    setup = EtcdSetup(processes, bird, etcd)
    setup.expect({A: "127.0.0.2", B: "127.0.0.3"}, "routes of both nodes at BIRD")
    samples = []
    for cycle in range(4):
        samples.append(timed(
            lambda: netplan("release", "--cluster", "demo", "node-b", "--store", etcd.url),
            lambda: setup.expect({A: "127.0.0.2"}, "node-b's withdrawal")))
        fresh = f"10.244.{cycle + 2}.0/24"  # never handed out before: taken first
        samples.append(timed(
            lambda: netplan("allocate", "-f", str(setup.spec), "--store", etcd.url),
            lambda f=fresh: setup.expect({A: "127.0.0.2", f: "127.0.0.3"}, "node-b's route")))
    print("\netcd lease-to-BIRD (ms, from the command's return / start): "
          + ", ".join(f"{low * 1000:.0f}/{high * 1000:.0f}" for low, high in samples))
    assert statistics.median(low for low, _ in samples) < 1.0


def test_etcd_outage_keeps_routes_and_catches_up(processes, bird, etcd):
    setup = EtcdSetup(processes, bird, etcd)
    setup.expect({A: "127.0.0.2", B: "127.0.0.3"}, "routes of both nodes at BIRD")
    etcd.stop()  # SIGKILL, by PID
    speakers = setup.speakers.values()
    wait_for(lambda: all(s.metrics().get("netplan_speaker_store_up") == 0 for s in speakers),
             "store down at both speakers", setup.diagnose, timeout=20)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert bird.routes() == {A: ["127.0.0.2"], B: ["127.0.0.3"]}, setup.diagnose()
        time.sleep(0.1)
    etcd.start_member(etcd.members[0])  # on its data directory: the leases are kept
    etcd.wait_healthy()
    for speaker in speakers:
        wait_for(lambda s=speaker: s.metrics().get("netplan_speaker_store_up") == 1,
                 "store up again", setup.diagnose, timeout=20)
        assert speaker.metrics()["netplan_speaker_store_reconnects_total"] >= 1
    assert bird.routes() == {A: ["127.0.0.2"], B: ["127.0.0.3"]}
    netplan("release", "--cluster", "demo", "node-b", "--store", etcd.url)
    setup.expect({A: "127.0.0.2"}, "a change made after the outage")


def test_ttl_lease_kept_alive_then_expires_with_the_speaker(processes, bird, etcd):
    setup = EtcdSetup(processes, bird, etcd, "--lease-ttl", "2")
    setup.expect({A: "127.0.0.2", B: "127.0.0.3"}, "routes of both nodes at BIRD")

    def nodes_with_leases() -> set[str]:
        with open_store(etcd.url, StoreOptions(timeout=5)) as store:
            state = store.snapshot().clusters["demo"]
        return {lease.node for lease in state.leases}

    wait_for(lambda: "tied to etcd lease" in setup.speakers["node-b"].proc.log.read_text(),
             "node-b's leases tied to an etcd lease", setup.diagnose)
    time.sleep(5)  # more than twice the ttl: only the keepalives hold the leases
    assert nodes_with_leases() == {"node-a", "node-b"}
    # node-b's speaker dies without a word (its ExaBGP and agent with it): nothing renews
    b = setup.speakers["node-b"]
    processes.note_offspring(b.proc)
    os.kill(b.proc.pid, signal.SIGKILL)
    wait_for(lambda: nodes_with_leases() == {"node-a"}, "node-b's leases expired",
             setup.diagnose, timeout=15)
    # BIRD lost node-b's route with its session; node-a's lease, renewed, stays
    setup.expect({A: "127.0.0.2"}, "only node-a's route")
    time.sleep(3)
    assert nodes_with_leases() == {"node-a"}
