"""The supervisor's side: the report channel, the status it folds, the HTTP endpoints."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from ipaddress import ip_address, ip_network

import pytest

from bgp import channel
from bgp.rib import Diff, Route
from bgp.status import SpeakerStatus, serve

PEERS = [ip_address("127.0.0.1"), ip_address("127.0.0.3")]


def route(prefix: str, next_hop: str, peer: str) -> Route:
    return Route(ip_network(prefix), ip_address(next_hop), ip_address(peer))


@pytest.fixture
def status() -> SpeakerStatus:
    running = SpeakerStatus("node-a", PEERS)
    running.exabgp_started(restart=False)
    running.report(1, channel.hello())
    return running


def sample(status: SpeakerStatus, name: str) -> float:
    for line in status.metrics().decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if not line.startswith("#"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}")


def test_status_folds_the_agents_reports(status):
    status.report(1, channel.peer("127.0.0.1", "established"))
    status.report(1, {"announced": {"add": ["10.244.0.0/24", "fd00::/64"], "del": []}})
    learned = Diff((route("10.244.2.0/24", "127.0.0.3", "127.0.0.3"),
                    route("10.244.1.0/24", "127.0.0.1", "127.0.0.1")), ())
    status.report(1, channel.learned(learned))
    assert status.status() == {
        "node": "node-a",
        "peers": [{"address": "127.0.0.1", "state": "established"},
                  {"address": "127.0.0.3", "state": "idle"}],
        "announced": ["10.244.0.0/24", "fd00::/64"],
        "learned": [{"prefix": "10.244.1.0/24", "nextHop": "127.0.0.1", "peer": "127.0.0.1"},
                    {"prefix": "10.244.2.0/24", "nextHop": "127.0.0.3", "peer": "127.0.0.3"}],
    }
    assert sample(status, "netplan_speaker_routes_announced") == 2
    assert 'netplan_speaker_routes_learned{peer="127.0.0.3"} 1.0' in status.metrics().decode()
    status.report(1, channel.learned(Diff((), learned.added[:1])))
    assert [r["prefix"] for r in status.status()["learned"]] == ["10.244.1.0/24"]
    assert 'netplan_speaker_routes_learned{peer="127.0.0.3"} 0.0' in status.metrics().decode()


def test_metrics_count_latency_errors_and_store_reconnects(status):
    status.report(1, channel.acked([0.002, 0.004], errors=0))
    status.report(1, channel.acked([0.5], errors=1))
    assert sample(status, "netplan_speaker_announce_latency_seconds_count") == 3
    assert sample(status, "netplan_speaker_exabgp_command_errors_total") == 1
    for up in (True, False, True, False, True):
        status.report(1, channel.store(up))
    assert sample(status, "netplan_speaker_store_reconnects_total") == 2
    assert sample(status, "netplan_speaker_store_up") == 1


def test_exabgp_gone_means_sessions_down_and_tables_empty(status):
    status.report(1, channel.peer("127.0.0.1", "established"))
    status.report(1, {"announced": {"add": ["10.244.0.0/24"], "del": []}})
    status.exabgp_stopped()
    assert status.health() == (False, "ExaBGP is not running")
    assert status.status()["peers"] == [{"address": "127.0.0.1", "state": "down"},
                                        {"address": "127.0.0.3", "state": "idle"}]
    assert status.status()["announced"] == []
    status.exabgp_started(restart=True)
    assert status.health() == (False, "ExaBGP's agent has not reported yet")
    status.report(2, channel.hello())
    assert status.health() == (True, "ok")
    assert sample(status, "netplan_speaker_exabgp_restarts_total") == 1


def test_reports_of_a_replaced_agent_are_ignored(status):
    status.report(2, channel.hello())
    status.report(1, {"announced": {"add": ["10.9.9.0/24"], "del": []}})
    status.report(1, None)  # its connection ends: the current agent is still there
    assert status.status()["announced"] == []
    assert status.health() == (True, "ok")
    status.report(2, None)
    assert status.health() == (False, "ExaBGP's agent has not reported yet")


def test_channel_carries_reports_in_order(tmp_path):
    received: list[tuple[int, dict | None]] = []
    ended = threading.Event()

    def on_report(conn, report):
        received.append((conn, report))
        if report is None:
            ended.set()

    listener = channel.Listener(str(tmp_path / "agent.sock"), on_report)
    try:
        reporter = channel.Reporter(listener.path, on_broken=lambda: None)
        reports = [channel.hello()] + [channel.store(i % 2 == 0) for i in range(200)]
        for report in reports:
            reporter.send(report)
        reporter.close()
        assert ended.wait(5)
    finally:
        listener.close()
    assert received == [(1, r) for r in reports] + [(1, None)]
    assert (tmp_path / "agent.sock").stat().st_mode & 0o777 == 0o600


def test_http_endpoints(status):
    server = serve(status, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"
        with urllib.request.urlopen(base + "/status", timeout=5) as response:
            assert response.headers["Content-Type"] == "application/json"
            assert json.loads(response.read())["node"] == "node-a"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            assert b"netplan_speaker_session_state" in response.read()
        status.exabgp_stopped()
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(base + "/healthz", timeout=5)
        assert unhealthy.value.code == 503
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nothing", timeout=5)
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
