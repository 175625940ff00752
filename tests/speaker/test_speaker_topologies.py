"""Speakers among themselves (full mesh) and behind a route reflector, which runs BIRD.

ExaBGP does not reflect (bgp/speaker.py says why the speaker does not either): reflector
nodes run BIRD from `netplan render bird` (test_speaker_cli.py: the speaker refuses them).
"""

from __future__ import annotations

import pytest
from speaker_harness import (
    Bird,
    Node,
    Processes,
    Speaker,
    bird_peer_config,
    free_port,
    netplan,
    wait_for,
    write_spec,
)

CIDRS = ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]  # allocated in name order


def test_full_mesh_of_three_speakers(processes: Processes):
    nodes = [Node(f"node-{x}", f"127.0.0.{i + 2}") for i, x in enumerate("abc")]
    spec = write_spec(processes.tmp / "mesh.yaml", nodes, topology="full-mesh")
    store = str(processes.tmp / "netplan.db")
    netplan("allocate", "-f", str(spec), "--store", store)
    speakers = [Speaker(processes, spec, n.name, store).start() for n in nodes]

    def diagnose() -> str:
        return "\n".join(str(s.status()) for s in speakers) + "\n" + processes.logs()

    for i, speaker in enumerate(speakers):
        others = {(CIDRS[j], nodes[j].address) for j in range(3) if j != i}
        wait_for(lambda s=speaker, o=others: s.learned() == o,
                 f"{nodes[i].name} learning the other two nodes' CIDRs", diagnose)
        status = speaker.status()
        assert status["announced"] == [CIDRS[i]]
        assert {p["address"] for p in status["peers"]} == {
            n.address for j, n in enumerate(nodes) if j != i}
        # over a mesh every route comes from the node that owns it
        assert all(r["peer"] == r["nextHop"] for r in status["learned"])
        assert all(p["state"] == "established" for p in status["peers"])


@pytest.mark.parametrize("how", ["rendered", "external"])
def test_clients_learn_through_a_bird_reflector(how, processes: Processes, bird: Bird):
    """rendered: topology route-reflector, node-r runs `netplan render bird`'s configuration.
    external: topology none, BIRD is an external iBGP peer configured with `rr client`."""
    tmp = processes.tmp
    a, b = Node("node-a", "127.0.0.2"), Node("node-b", "127.0.0.3")
    store = str(tmp / "netplan.db")
    if how == "rendered":
        r = Node("node-r", "127.0.0.1")
        spec = write_spec(tmp / "rr.yaml", [r, a, b], topology="route-reflector",
                          reflectors=["node-r"])
        netplan("allocate", "-f", str(spec), "--store", store)
        netplan("render", "bird", "-f", str(spec), "--node", "node-r", "--store", store,
                "--out", str(bird.conf))
        bird.start()
        reflector_routes = {(CIDRS[2], r.address)}  # node-r's own CIDR, blackholed there
    else:
        port = free_port("127.0.0.1")
        spec = write_spec(tmp / "ext.yaml", [a, b], peers=[("127.0.0.1", port)])
        netplan("allocate", "-f", str(spec), "--store", store)
        bird.start(bird_peer_config("127.0.0.1", port, [a, b], reflector=True))
        reflector_routes = set()
    a_cidr, b_cidr = CIDRS[0], CIDRS[1]
    speakers = {n.name: Speaker(processes, spec, n.name, store).start() for n in (a, b)}

    def diagnose() -> str:
        return (f"{bird.birdc('show', 'route', 'all')}\n"
                + "\n".join(str(s.status()) for s in speakers.values()) + processes.logs())

    # each client learns the other's CIDR from the reflector, with the owner's next hop
    wait_for(lambda: speakers["node-b"].learned() == {(a_cidr, a.address)} | reflector_routes,
             "node-b learning node-a's CIDR through the reflector", diagnose)
    wait_for(lambda: speakers["node-a"].learned() == {(b_cidr, b.address)} | reflector_routes,
             "node-a learning node-b's CIDR through the reflector", diagnose)
    learned = speakers["node-b"].status()["learned"]
    assert {r["peer"] for r in learned} == {"127.0.0.1"}  # from the reflector, not node-a
