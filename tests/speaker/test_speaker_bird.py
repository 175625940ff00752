"""`netplan speaker` against a real BIRD peer, on a SQLite store: routes, changes, faults.

Two (or three) speakers on 127.0.0.2.. peer with BIRD on 127.0.0.1, an external iBGP
peer of every node (topology none). BIRD's view (`birdc show route all`) is the oracle.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from speaker_harness import (
    WAIT,
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

BIRD_ADDRESS = "127.0.0.1"
A, B = "10.244.0.0/24", "10.244.1.0/24"  # what allocate hands node-a and node-b


class Cluster:
    """BIRD plus the speakers of nodes a and b (and c, whose lease comes later)."""

    def __init__(self, processes: Processes, bird: Bird, with_c: bool = False) -> None:
        tmp = processes.tmp
        self.processes, self.bird = processes, bird
        self.a, self.b = Node("node-a", "127.0.0.2"), Node("node-b", "127.0.0.3")
        self.c = Node("node-c", "127.0.0.4")
        self.bird_port = free_port(BIRD_ADDRESS)
        peers = [(BIRD_ADDRESS, self.bird_port)]
        self.spec_ab = write_spec(tmp / "ab.yaml", [self.a, self.b], peers=peers)
        self.spec_ac = write_spec(tmp / "ac.yaml", [self.a, self.c], peers=peers)
        self.store = str(tmp / "netplan.db")
        netplan("allocate", "-f", str(self.spec_ab), "--store", self.store)
        speakers = [self.a, self.b, self.c] if with_c else [self.a, self.b]
        bird.start(bird_peer_config(BIRD_ADDRESS, self.bird_port, speakers))
        self.speakers = {
            n.name: Speaker(processes, self.spec_ac if n is self.c else self.spec_ab, n.name,
                            self.store).start()
            for n in speakers
        }

    def expect(self, routes: dict[str, str], what: str, timeout: float = WAIT) -> float:
        """Wait until BIRD holds exactly these routes (prefix -> next hop); seconds taken."""
        wanted = {prefix: [next_hop] for prefix, next_hop in routes.items()}
        return wait_for(lambda: self.bird.routes() == wanted, what, self.diagnose,
                        timeout=timeout, interval=0.01)

    def diagnose(self) -> str:
        statuses = "\n".join(f"{n}: {s.status()}" for n, s in self.speakers.items())
        return (f"BIRD routes: {self.bird.routes()}\n{statuses}\n"
                f"{self.bird.birdc('show', 'protocols')}\n{self.processes.logs()}")


@pytest.fixture
def cluster(processes: Processes, bird: Bird) -> Cluster:
    running = Cluster(processes, bird)
    running.expect({A: "127.0.0.2", B: "127.0.0.3"}, "routes of both nodes at BIRD")
    return running


def test_bird_learns_releases_and_new_nodes(processes, bird, record_property):
    cluster = Cluster(processes, bird, with_c=True)
    cluster.expect({A: "127.0.0.2", B: "127.0.0.3"}, "routes of both nodes at BIRD")
    for name in ("node-a", "node-b"):
        status = cluster.speakers[name].status()
        assert status["node"] == name
        assert status["peers"] == [{"address": BIRD_ADDRESS, "state": "established"}]
    assert cluster.speakers["node-a"].status()["announced"] == [A]
    assert cluster.speakers["node-c"].status()["announced"] == []

    # node-b leaves: `netplan release` withdraws its route at BIRD
    released = timed(
        lambda: netplan("release", "--cluster", "demo", "node-b", "--store", cluster.store),
        lambda: cluster.expect({A: "127.0.0.2"}, "withdrawal of node-b's route"))

    # a spec that adds node-c (and drops node-b): node-c's new lease appears at BIRD
    c_cidr = "10.244.2.0/24"  # the lowest never handed out: node-b's is reused last
    allocated = timed(
        lambda: netplan("allocate", "-f", str(cluster.spec_ac), "--store", cluster.store),
        lambda: cluster.expect({A: "127.0.0.2", c_cidr: "127.0.0.4"}, "node-c's route"))
    assert cluster.speakers["node-c"].status()["announced"] == [c_cidr]

    record_property("release_to_bird_s", released)
    record_property("allocate_to_bird_s", allocated)
    print(f"\nSQLite lease-to-BIRD (ms, from the command's return / start): "
          f"release {released[0] * 1000:.0f} / {released[1] * 1000:.0f}, "
          f"allocate {allocated[0] * 1000:.0f} / {allocated[1] * 1000:.0f}")
    metrics = cluster.speakers["node-c"].metrics()
    assert metrics["netplan_speaker_routes_announced"] == 1
    assert metrics["netplan_speaker_announce_latency_seconds_count"] >= 1


def test_sigterm_withdraws_and_exits_zero(cluster: Cluster):
    speaker = cluster.speakers["node-a"]
    children = [speaker.exabgp_pid(), speaker.agent_pid()]
    start = time.monotonic()
    assert speaker.stop() == 0
    took = time.monotonic() - start
    assert took < 5, f"SIGTERM took {took:.1f} s\n{cluster.processes.logs()}"
    # ExaBGP closed the session with a Cease: BIRD dropped the route at once
    assert cluster.bird.routes() == {B: ["127.0.0.3"]}, cluster.diagnose()
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    assert re.search(r"netplan-speaker\[\d+\] INFO stopped$", speaker.proc.log.read_text(),
                     re.MULTILINE)


def test_exabgp_killed_routes_back_within_5s(cluster: Cluster):
    speaker = cluster.speakers["node-a"]
    exabgp, agent = speaker.exabgp_pid(), speaker.agent_pid()
    os.kill(exabgp, signal.SIGKILL)
    start = time.monotonic()
    # the session drops with the process; the route is back with the next ExaBGP
    wait_for(lambda: A not in cluster.bird.routes(), "session loss at BIRD", cluster.diagnose,
             timeout=5, interval=0.01)
    cluster.expect({A: "127.0.0.2", B: "127.0.0.3"}, "node-a's route back", timeout=5)
    back = time.monotonic() - start
    print(f"\nExaBGP kill -9 -> route back at BIRD in {back:.2f} s")
    assert back < 5
    assert speaker.exabgp_pid() != exabgp
    # the old agent ends with its ExaBGP (end of input)
    wait_for(lambda: not Path(f"/proc/{agent}").exists(), "old agent's exit", timeout=5)
    wait_for(lambda: speaker.metrics().get("netplan_speaker_exabgp_restarts_total") == 1,
             "restart counted")
    assert speaker.healthy()


def test_agent_killed_restarts_exabgp(cluster: Cluster):
    speaker = cluster.speakers["node-b"]
    exabgp, agent = speaker.exabgp_pid(), speaker.agent_pid()
    os.kill(agent, signal.SIGKILL)
    # ExaBGP would go on without its agent: the supervisor restarts both
    wait_for(lambda: not Path(f"/proc/{exabgp}").exists(), "old ExaBGP's end", cluster.diagnose,
             timeout=10)
    cluster.expect({A: "127.0.0.2", B: "127.0.0.3"}, "node-b's route back", timeout=10)
    wait_for(lambda: speaker.agent_pid() != agent, "a new agent")


def test_store_unavailable_keeps_routes_and_catches_up(cluster: Cluster):
    store = Path(cluster.store)
    away = store.with_name("netplan-away.db")
    # a directory where the file was: every read of the store fails
    store.rename(away)
    store.mkdir()
    speakers = cluster.speakers.values()
    wait_for(lambda: all(s.metrics().get("netplan_speaker_store_up") == 0 for s in speakers),
             "store down at both speakers", cluster.diagnose, timeout=10)
    # nothing is withdrawn while the store is away
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert cluster.bird.routes() == {A: ["127.0.0.2"], B: ["127.0.0.3"]}, cluster.diagnose()
        time.sleep(0.1)
    # a change made meanwhile (on the file, elsewhere) arrives once the store is back
    netplan("release", "--cluster", "demo", "node-b", "--store", str(away))
    time.sleep(0.5)
    assert B in cluster.bird.routes()
    store.rmdir()
    away.rename(store)
    cluster.expect({A: "127.0.0.2"}, "catch-up: node-b's route withdrawn")
    for speaker in speakers:  # each speaker retries on its own backoff (at most 5 s)
        wait_for(lambda s=speaker: s.metrics().get("netplan_speaker_store_up") == 1,
                 "store up again", cluster.diagnose, timeout=10)
        assert speaker.metrics()["netplan_speaker_store_reconnects_total"] == 1
    # and a change made after it returns: node-b comes back with a fresh CIDR
    netplan("allocate", "-f", str(cluster.spec_ab), "--store", cluster.store)
    cluster.expect({A: "127.0.0.2", "10.244.2.0/24": "127.0.0.3"}, "node-b's new route")


def test_bird_restart_sessions_reestablished_routes_resent(cluster: Cluster):
    cluster.bird.stop()
    for speaker in cluster.speakers.values():
        wait_for(lambda s=speaker: s.status()["peers"][0]["state"] == "down",
                 "session down at the speaker", cluster.diagnose, timeout=10)
    cluster.bird.start()
    cluster.expect({A: "127.0.0.2", B: "127.0.0.3"}, "routes resent to the new BIRD")
    for speaker in cluster.speakers.values():
        wait_for(speaker.established, "session established again", cluster.diagnose)
        assert speaker.metrics()["netplan_speaker_exabgp_restarts_total"] == 0


def test_status_port_taken_is_an_error(cluster: Cluster, processes: Processes):
    taken = cluster.speakers["node-a"].port
    late = Speaker(processes, cluster.spec_ab, "node-a", cluster.store, name="late")
    late.port = taken
    late.start()
    assert late.proc.popen.wait(timeout=WAIT) == 1
    log = late.proc.log.read_text()
    assert f"error: status endpoint 127.0.0.1 port {taken}:" in log, log
    assert "ExaBGP started" not in log


def test_a_speaker_started_before_its_store_exists_says_so_then_follows_it(processes, bird):
    """A typo in --store would otherwise look like a node without leases."""
    node = Node("node-a", "127.0.0.2")
    bird_port = free_port(BIRD_ADDRESS)
    spec = write_spec(processes.tmp / "a.yaml", [node], peers=[(BIRD_ADDRESS, bird_port)])
    store = processes.tmp / "later.db"
    bird.start(bird_peer_config(BIRD_ADDRESS, bird_port, [node]))
    speaker = Speaker(processes, spec, "node-a", str(store)).start()
    wait_for(speaker.established, "session established", processes.logs)
    assert (f"WARNING store {store} does not exist: node node-a announces nothing until "
            "`netplan allocate` creates it" in speaker.proc.log.read_text()), processes.logs()
    assert not store.exists()  # the speaker only reads
    netplan("allocate", "-f", str(spec), "--store", str(store))
    wait_for(lambda: bird.routes() == {A: ["127.0.0.2"]}, "node-a's route at BIRD",
             processes.logs)
