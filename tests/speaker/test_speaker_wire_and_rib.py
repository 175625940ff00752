"""The ExaBGP API codec and the route tables, without processes."""

from __future__ import annotations

import json
import os
import sys
from ipaddress import ip_address, ip_network

import pytest

from bgp import exabgp_api
from bgp.agent import neighbors_by_family
from bgp.exabgp_api import Ack, PeerState, Pong, RouteUpdate, Shutdown
from bgp.rib import AdjRibIn, Diff, LocalRib, Route, table_diff

N = ip_network
IP = ip_address


def header(kind: str, **body) -> dict:
    """An ExaBGP 5 JSON message as it prints them (reactor/api/response/json.py)."""
    neighbor = {"address": {"local": "127.0.0.2", "peer": "127.0.0.1"},
                "asn": {"local": 64512, "peer": 64512}, "router-id": "127.0.0.2", **body}
    return {"exabgp": "5.0.0", "time": 1.0, "host": "vm", "pid": 1, "ppid": 1,
            "counter": 1, "type": kind, "neighbor": neighbor}


# --- commands -----------------------------------------------------------------------------

def test_announce_batches_prefixes_per_line():
    prefixes = [N(f"10.244.{i}.0/24") for i in range(5)]
    lines = list(exabgp_api.announce(prefixes, batch=2))
    assert [line for line, _ in lines] == [
        "announce attributes next-hop self nlri 10.244.0.0/24 10.244.1.0/24",
        "announce attributes next-hop self nlri 10.244.2.0/24 10.244.3.0/24",
        "announce attributes next-hop self nlri 10.244.4.0/24",
    ]
    assert [carried for _, carried in lines] == [prefixes[0:2], prefixes[2:4], prefixes[4:]]


def test_withdraw_names_neighbors_when_given():
    ((line, _),) = exabgp_api.withdraw([N("fd00:10:244::/64")], [IP("fd00::1"), IP("fd00::2")])
    assert line == ("neighbor fd00::1 , neighbor fd00::2 withdraw attributes next-hop self "
                    "nlri fd00:10:244::/64")


def test_nothing_to_send_makes_no_line():
    assert list(exabgp_api.announce([])) == []


def test_default_batch_stays_far_below_exabgps_line_limit():
    widest = [N(f"fd00:ffff:ffff:{i:x}::/64") for i in range(exabgp_api.BATCH)]
    ((line, _),) = exabgp_api.announce(widest)
    assert len(line) < 1024 * 1024 / 10


def test_neighbors_by_family():
    v4, v6 = [IP("10.0.0.1"), IP("10.0.0.2")], [IP("fd00::1")]
    assert neighbors_by_family(v4) == {4: None}  # every neighbor: no names needed
    assert neighbors_by_family(v4 + v6) == {4: ("10.0.0.1", "10.0.0.2"), 6: ("fd00::1",)}
    assert neighbors_by_family([]) == {}


# --- messages -----------------------------------------------------------------------------

def test_decode_acknowledgements():
    assert exabgp_api.decode("done\n") == Ack(True)
    assert exabgp_api.decode("error\n") == Ack(False)


def test_decode_the_reply_to_ping():
    """What ExaBGP 5 writes for `version` (reactor/api/command/reactor.py), before its done."""
    assert exabgp_api.PING == "version"
    assert exabgp_api.decode("exabgp 5.0.15\n") == Pong()


@pytest.mark.parametrize(("word", "reason"), [("connected", ""), ("up", ""),
                                              ("down", "peer reset")])
def test_decode_state(word, reason):
    extra = {"reason": reason} if reason else {}
    line = json.dumps(header("state", state=word, **extra))
    assert exabgp_api.decode(line) == PeerState(IP("127.0.0.1"), word, reason)


def test_decode_update_with_announcements_and_withdrawals():
    update = {
        "attribute": {"origin": "igp", "local-preference": 100},
        "announce": {
            "ipv4 unicast": {"127.0.0.3": [{"nlri": "10.244.1.0/24"}, {"nlri": "10.244.2.0/24"}]},
            "ipv6 unicast": {"fd00::3": [{"nlri": "fd00:10:244:1::/64"}]},
        },
        "withdraw": {"ipv4 unicast": [{"nlri": "10.244.9.0/24"}]},
    }
    line = json.dumps(header("update", direction="receive", message={"update": update}))
    assert exabgp_api.decode(line) == RouteUpdate(
        IP("127.0.0.1"),
        ((N("10.244.1.0/24"), IP("127.0.0.3")), (N("10.244.2.0/24"), IP("127.0.0.3")),
         (N("fd00:10:244:1::/64"), IP("fd00::3"))),
        (N("10.244.9.0/24"),),
    )


def test_decode_ignores_end_of_rib_and_other_messages():
    eor = header("update", direction="receive",
                 message={"eor": {"afi": "ipv4", "safi": "unicast"}})
    assert exabgp_api.decode(json.dumps(eor)) is None
    assert exabgp_api.decode(json.dumps(header("keepalive", direction="receive"))) is None


def test_decode_shutdown():
    line = json.dumps({"exabgp": "5.0.0", "type": "notification", "notification": "shutdown"})
    assert exabgp_api.decode(line) == Shutdown()


def test_decode_rejects_garbage():
    with pytest.raises(ValueError):
        exabgp_api.decode("not json\n")


# --- the local RIB ------------------------------------------------------------------------

def test_local_rib_batches_changes_into_one_diff():
    rib = LocalRib()
    rib.add(N("10.244.1.0/24"), now=1.0)
    rib.add(N("10.244.0.0/24"), now=2.0)
    rib.add(N("fd00::/64"), now=3.0)
    diff, since = rib.take()
    assert diff == Diff((N("10.244.0.0/24"), N("10.244.1.0/24"), N("fd00::/64")), ())
    assert since == {N("10.244.1.0/24"): 1.0, N("10.244.0.0/24"): 2.0, N("fd00::/64"): 3.0}
    assert not rib.pending()


def test_local_rib_change_undone_before_sending_is_not_sent():
    rib = LocalRib()
    rib.add(N("10.244.1.0/24"), now=1.0)
    rib.take()
    rib.remove(N("10.244.1.0/24"), now=2.0)
    rib.add(N("10.244.1.0/24"), now=3.0)
    assert not rib.pending()
    assert rib.take() == (Diff(), {})


def test_local_rib_replace_is_a_diff_against_what_was_sent():
    rib = LocalRib()
    rib.replace([N("10.244.0.0/24"), N("10.244.1.0/24")], now=1.0)
    rib.take()
    rib.replace([N("10.244.1.0/24"), N("10.244.2.0/24")], now=5.0)
    diff, since = rib.take()
    assert diff == Diff((N("10.244.2.0/24"),), (N("10.244.0.0/24"),))
    assert since == {N("10.244.2.0/24"): 5.0, N("10.244.0.0/24"): 5.0}


def test_local_rib_keeps_the_first_time_a_prefix_waited():
    rib = LocalRib()
    rib.add(N("10.244.1.0/24"), now=1.0)
    rib.add(N("10.244.1.0/24"), now=2.0)
    assert rib.take()[1] == {N("10.244.1.0/24"): 1.0}


# --- the learned routes -------------------------------------------------------------------

def test_adj_rib_in_update_replace_withdraw():
    adj = AdjRibIn()
    peer = IP("127.0.0.1")
    a, b = N("10.244.1.0/24"), N("10.244.2.0/24")
    assert adj.update(peer, [(a, IP("127.0.0.3")), (b, IP("127.0.0.4"))], []) == Diff(
        (Route(a, IP("127.0.0.3"), peer), Route(b, IP("127.0.0.4"), peer)), ())
    # the same route again: nothing; a new next hop: deleted and added
    assert adj.update(peer, [(a, IP("127.0.0.3"))], []) == Diff()
    assert adj.update(peer, [(a, IP("127.0.0.5"))], []) == Diff(
        (Route(a, IP("127.0.0.5"), peer),), (Route(a, IP("127.0.0.3"), peer),))
    assert adj.update(peer, [], [b, N("10.9.9.0/24")]) == Diff(
        (), (Route(b, IP("127.0.0.4"), peer),))
    assert adj.selected() == {a: IP("127.0.0.5")}


def test_adj_rib_in_drops_a_peers_routes_with_its_session():
    adj = AdjRibIn()
    one, two = IP("127.0.0.1"), IP("127.0.0.9")
    adj.update(one, [(N("10.244.1.0/24"), IP("127.0.0.3"))], [])
    adj.update(two, [(N("10.244.2.0/24"), IP("127.0.0.4"))], [])
    assert adj.drop_peer(one) == Diff((), (Route(N("10.244.1.0/24"), IP("127.0.0.3"), one),))
    assert adj.selected() == {N("10.244.2.0/24"): IP("127.0.0.4")}
    assert adj.drop_peer(one) == Diff()


def test_selected_takes_the_lowest_peer_and_skips_excluded_prefixes():
    adj = AdjRibIn()
    p, own = N("10.244.1.0/24"), N("10.244.0.0/24")
    adj.update(IP("127.0.0.9"), [(p, IP("192.0.2.9")), (own, IP("192.0.2.9"))], [])
    adj.update(IP("127.0.0.1"), [(p, IP("192.0.2.1"))], [])
    assert adj.selected(exclude=[own]) == {p: IP("192.0.2.1")}


def test_table_diff():
    a, b, c = N("10.0.1.0/24"), N("10.0.2.0/24"), N("10.0.3.0/24")
    current = {a: IP("192.0.2.1"), b: IP("192.0.2.2")}
    wanted = {a: IP("192.0.2.1"), b: IP("192.0.2.9"), c: IP("192.0.2.3")}
    assert table_diff(current, wanted) == Diff(((b, IP("192.0.2.9")), (c, IP("192.0.2.3"))), ())
    assert table_diff(current, {}) == Diff((), ((a, IP("192.0.2.1")), (b, IP("192.0.2.2"))))


PROBE = """\
import sys
sys.stdout.write("{ping}\\n")
sys.stdout.flush()
with open(sys.argv[1], "a") as seen:
    for line in sys.stdin:
        seen.write(line)
        seen.flush()
        if line.strip() in ("done", "error"):
            break
"""


def test_exabgp_answers_ping_with_its_version_line_then_done(processes, tmp_path):
    """The codec's reading of PING's answer (exabgp_api, at the top), against the ExaBGP the
    speaker runs: an API process writes PING and keeps what comes back. Its neighbor, on a
    loopback port nobody listens on, never comes up; the API runs all the same."""
    from bgp.speaker import EXABGP_ENV, find_exabgp
    from speaker_harness import free_port, wait_for

    probe, seen = tmp_path / "probe.py", tmp_path / "seen.txt"
    probe.write_text(PROBE.format(ping=exabgp_api.PING))
    conf = tmp_path / "exabgp.conf"
    conf.write_text(
        f"process probe {{\n  run {sys.executable} {probe} {seen};\n  encoder json;\n}}\n"
        f"neighbor 127.0.0.1 {{\n  router-id 127.0.0.2;\n  local-address 127.0.0.2;\n"
        f"  local-as 64512;\n  peer-as 64512;\n  listen {free_port('127.0.0.2')};\n"
        f"  connect {free_port('127.0.0.1')};\n  api {{\n    processes [ probe ];\n  }}\n}}\n")
    processes.start("exabgp", [find_exabgp(), str(conf)], env={**os.environ, **EXABGP_ENV})
    wait_for(lambda: seen.exists() and "done" in seen.read_text(), "the answer to PING",
             processes.logs)
    replies = [exabgp_api.decode(line) for line in seen.read_text().splitlines()]
    assert replies == [Pong(), Ack(True)], seen.read_text()
