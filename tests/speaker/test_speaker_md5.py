"""TCP MD5 between a speaker and a real BIRD: the password the spec names by `passwordEnv`
protects the session; the wrong one keeps it down."""

from __future__ import annotations

import time

import yaml
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

BIRD_ADDRESS = "127.0.0.1"
PASSWORD = "tor secret=1/+"  # base64 in ExaBGP's configuration, as is in BIRD's


def md5_cluster(processes: Processes, bird: Bird, monkeypatch, password: str) -> Speaker:
    node = Node("node-a", "127.0.0.2")
    port = free_port(BIRD_ADDRESS)
    spec = write_spec(processes.tmp / "s.yaml", [node], peers=[(BIRD_ADDRESS, port)])
    data = yaml.safe_load(spec.read_text())
    data["bgp"]["peers"][0]["passwordEnv"] = "TOR_PASSWORD"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    store = str(processes.tmp / "netplan.db")
    netplan("allocate", "-f", str(spec), "--store", store)
    config = bird_peer_config(BIRD_ADDRESS, port, [node]).replace(
        "  strict bind on;\n", f"  strict bind on;\n  password \"{PASSWORD}\";\n")
    bird.start(config)
    monkeypatch.setenv("TOR_PASSWORD", password)
    return Speaker(processes, spec, "node-a", store).start()


def test_the_session_with_the_right_password_carries_the_routes(processes, bird, monkeypatch):
    speaker = md5_cluster(processes, bird, monkeypatch, PASSWORD)
    wait_for(lambda: bird.routes() == {"10.244.0.0/24": ["127.0.0.2"]},
             "node-a's route at BIRD over an MD5 session",
             lambda: f"{bird.birdc('show', 'protocols', 'all')}\n{processes.logs()}")
    assert speaker.status()["peers"] == [{"address": BIRD_ADDRESS, "state": "established"}]


def test_a_wrong_password_keeps_the_session_down(processes, bird, monkeypatch):
    speaker = md5_cluster(processes, bird, monkeypatch, "not the password")
    time.sleep(5)  # several connect attempts on both sides
    assert bird.routes() == {}
    assert speaker.status()["peers"][0]["state"] != "established"
