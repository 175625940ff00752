"""What the speaker shows: GET /healthz, /metrics (Prometheus) and /status (JSON).

The supervisor owns a SpeakerStatus for its whole life and folds into it the agent's
reports (bgp/channel.py) and its own facts (ExaBGP started, stopped). Counters and the
latency histogram therefore survive ExaBGP restarts; the tables (sessions, announced,
learned) start over with each agent, as they do in ExaBGP.

/status: {"node": N, "peers": [{"address", "state"}], "announced": [cidr...],
          "learned": [{"prefix", "nextHop", "peer"}]}
/healthz: 200 `ok` while ExaBGP runs and its agent reports; 503 and the reason otherwise.
A store that is down or a peer that is down is no reason: the speaker still does its job.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from bgp.model import Address
from bgp.peers import DOWN, STATES, PeerTable
from bgp.rib import network_key

log = logging.getLogger(__name__)

# Lease change seen by the agent -> ExaBGP acknowledged the command carrying it.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)


class SpeakerStatus:
    def __init__(self, node: str, peers: Iterable[Address]) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._peers = PeerTable(peers)
        self._announced: set[str] = set()
        self._learned: dict[tuple[str, str], str] = {}  # (prefix, peer) -> next hop
        self._learned_per_peer: dict[str, int] = {}
        self._agent: int | None = None  # the report connection of the current agent
        self._exabgp = False
        self._store_reachable: bool | None = None  # None: no word from any agent yet

        r = self.registry = CollectorRegistry()
        self._session = Enum("netplan_speaker_session_state", "BGP session state per peer",
                             ["peer"], states=list(STATES), registry=r)
        self._announced_gauge = Gauge("netplan_speaker_routes_announced",
                                      "Prefixes handed to ExaBGP to announce", registry=r)
        self._learned_gauge = Gauge("netplan_speaker_routes_learned",
                                    "Routes learned, per peer", ["peer"], registry=r)
        self._installed_gauge = Gauge("netplan_speaker_routes_installed",
                                      "Learned routes in the routing table (--install-routes)",
                                      registry=r)
        self._store_up = Gauge("netplan_speaker_store_up",
                               "1 while the agent reads the store, 0 while it cannot",
                               registry=r)
        self._reconnects = Counter("netplan_speaker_store_reconnects",
                                   "Times the store came back after being unreachable",
                                   registry=r)
        self._latency = Histogram(
            "netplan_speaker_announce_latency_seconds",
            "From the agent seeing a lease change to ExaBGP acknowledging its (with)drawal",
            buckets=LATENCY_BUCKETS, registry=r)
        self._api_errors = Counter("netplan_speaker_exabgp_command_errors",
                                   "Command lines ExaBGP refused", registry=r)
        self._restarts = Counter("netplan_speaker_exabgp_restarts",
                                 "Times ExaBGP was started again after it stopped", registry=r)
        self._running = Gauge("netplan_speaker_exabgp_running",
                              "1 while ExaBGP runs and its agent reports", registry=r)
        for address, state in self._peers.items():
            self._session.labels(peer=str(address)).state(state)

    # --- the supervisor's facts -----------------------------------------------------------

    def exabgp_started(self, restart: bool) -> None:
        with self._lock:
            self._exabgp = True
            if restart:
                self._restarts.inc()

    def exabgp_stopped(self) -> None:
        """ExaBGP is gone: its sessions, what it announced and what it learned with it."""
        with self._lock:
            self._exabgp = False
            self._agent = None
            self._running.set(0)
            for peer in self._peers.all_down():
                self._session.labels(peer=str(peer)).state(DOWN)
            self._clear_tables()

    def _clear_tables(self) -> None:
        self._announced.clear()
        self._announced_gauge.set(0)
        for peer in self._learned_per_peer:
            self._learned_gauge.labels(peer=peer).set(0)
        self._learned.clear()
        self._learned_per_peer.clear()
        self._installed_gauge.set(0)

    # --- the agent's reports --------------------------------------------------------------

    def report(self, conn: int, report: dict | None) -> None:
        """A report of the agent on connection conn; None: that connection ended."""
        with self._lock:
            if report is None:
                if conn == self._agent:
                    self._agent = None
                    self._running.set(0)
                return
            if "hello" in report:
                self._agent = conn
                self._running.set(1 if self._exabgp else 0)
                self._clear_tables()
                return
            if conn != self._agent:
                return  # a late word of an agent already replaced
            for kind, body in report.items():
                handler = getattr(self, f"_on_{kind}", None)
                if handler is None:
                    log.warning("unknown report from the agent: %s", kind)
                    continue
                handler(body)

    def _on_peer(self, body: dict) -> None:
        address = ip_address(body["address"])
        if self._peers.set(address, body["state"]):
            self._session.labels(peer=str(address)).state(body["state"])

    def _on_announced(self, body: dict) -> None:
        self._announced.difference_update(body["del"])
        self._announced.update(body["add"])
        self._announced_gauge.set(len(self._announced))

    def _on_learned(self, body: dict) -> None:
        counts = self._learned_per_peer
        for prefix, _, peer in body["del"]:
            if self._learned.pop((prefix, peer), None) is not None:
                counts[peer] -= 1
        for prefix, next_hop, peer in body["add"]:
            if (prefix, peer) not in self._learned:
                counts[peer] = counts.get(peer, 0) + 1
            self._learned[(prefix, peer)] = next_hop
        for peer in {peer for *_, peer in body["del"] + body["add"]}:
            self._learned_gauge.labels(peer=peer).set(counts[peer])

    def _on_acked(self, body: dict) -> None:
        for seconds in body["latencies"]:
            self._latency.observe(seconds)
        if body["errors"]:
            self._api_errors.inc(body["errors"])

    def _on_store(self, body: dict) -> None:
        if body["up"] and self._store_reachable is False:
            self._reconnects.inc()
        self._store_reachable = body["up"]
        self._store_up.set(1 if body["up"] else 0)

    def _on_installed(self, body: dict) -> None:
        self._installed_gauge.set(body["routes"])

    # --- what the HTTP endpoints show -----------------------------------------------------

    def health(self) -> tuple[bool, str]:
        with self._lock:
            if not self._exabgp:
                return False, "ExaBGP is not running"
            if self._agent is None:
                return False, "ExaBGP's agent has not reported yet"
            return True, "ok"

    def status(self) -> dict:
        with self._lock:
            learned = sorted(
                self._learned.items(),
                key=lambda item: (network_key(ip_network(item[0][0])), item[0][1]),
            )
            return {
                "node": self.node,
                "peers": [{"address": str(a), "state": s} for a, s in self._peers.items()],
                "announced": sorted(self._announced, key=lambda p: network_key(ip_network(p))),
                "learned": [{"prefix": p, "nextHop": nh, "peer": peer}
                            for (p, peer), nh in learned],
            }

    def metrics(self) -> bytes:
        with self._lock:
            return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    status: SpeakerStatus  # set on the subclass serve() makes

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            ok, reason = self.status.health()
            self._send(200 if ok else 503, "text/plain; charset=utf-8", (reason + "\n").encode())
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, self.status.metrics())
        elif path == "/status":
            body = json.dumps(self.status.status(), indent=2) + "\n"
            self._send(200, "application/json", body.encode())
        else:
            self._send(404, "text/plain; charset=utf-8",
                       b"not found: /healthz, /metrics, /status\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("status %s: " + format, self.client_address[0], *args)


class StatusServer(ThreadingHTTPServer):
    daemon_threads = True


def serve(status: SpeakerStatus, address: str, port: int) -> StatusServer:
    """Serve the endpoints from a thread; raises OSError when the address cannot be bound."""
    handler = type("Handler", (_Handler,), {"status": status})
    server_class = StatusServer
    if ip_address(address).version == 6:
        server_class = type("StatusServer6", (StatusServer,), {"address_family": socket.AF_INET6})
    server = server_class((address, port), handler)
    threading.Thread(target=server.serve_forever, name="status", daemon=True).start()
    return server
