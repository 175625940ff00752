"""The report channel: how the agent (ExaBGP's API process) tells the supervisor what it does.

A unix stream socket in the speaker's run directory; the supervisor listens, the agent
connects once at start and writes JSON lines, one report each. One line flows back, the
first on the connection: the secrets the agent must not find in its environment, as an
object ({"etcd_password": P}, or {} when there is none); nothing more (bgp/speaker.py,
Speaker._secrets, says why this way). The supervisor folds the reports into /status and
/metrics (bgp/status.py), so its counters and histogram outlive ExaBGP and agent restarts,
and a closed connection tells it the agent is gone.

Reports (each a one-key object) carry changes, never whole tables, except `hello`:
    {"hello": {"pid": P}}                          a new agent: it holds nothing yet
    {"peer": {"address": A, "state": S}}           a session changed (bgp/peers.py names)
    {"announced": {"add": [P...], "del": [P...]}}  prefixes handed to ExaBGP / withdrawn
    {"learned": {"add": [[P, NH, PEER]...], "del": [[P, NH, PEER]...]}}
    {"acked": {"latencies": [s...], "errors": N}}  ExaBGP acknowledged a command line:
                                                   per prefix, seconds since the agent saw
                                                   its lease change; N lines refused
    {"store": {"up": B, "reason": R}}              the store became unreachable / is back
    {"installed": {"routes": N}}                   routes in the namespace's routing table

The agent sends from its own thread through an unbounded queue, so that reading ExaBGP's
output never waits for the supervisor.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable

from bgp.model import network_text
from bgp.rib import Diff, Route

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # the supervisor listens before it starts ExaBGP: this is slack


def hello() -> dict:
    return {"hello": {"pid": os.getpid()}}


def peer(address: object, state: str) -> dict:
    return {"peer": {"address": str(address), "state": state}}


def announced(diff: Diff) -> dict:
    return {"announced": {"add": [network_text(p) for p in diff.added],
                          "del": [network_text(p) for p in diff.deleted]}}


def _route(route: Route) -> list[str]:
    return [str(route.prefix), str(route.next_hop), str(route.peer)]


def learned(diff: Diff[Route]) -> dict:
    return {"learned": {"add": [_route(r) for r in diff.added],
                        "del": [_route(r) for r in diff.deleted]}}


def acked(latencies: Iterable[float], errors: int) -> dict:
    return {"acked": {"latencies": [round(s, 6) for s in latencies], "errors": errors}}


def store(up: bool, reason: str = "") -> dict:
    return {"store": {"up": up, "reason": reason}}


def installed(routes: int) -> dict:
    return {"installed": {"routes": routes}}


class Reporter:
    """The agent's end: connect, then send reports in order from a thread of its own."""

    def __init__(self, path: str, on_broken: Callable[[], None]) -> None:
        self._sock = _connect(path)
        self.secrets: dict[str, str] = _first_line(self._sock)
        self._queue: queue.SimpleQueue[dict | None] = queue.SimpleQueue()
        self._on_broken = on_broken
        self._thread = threading.Thread(target=self._run, name="report", daemon=True)
        self._thread.start()

    def send(self, report: dict) -> None:
        self._queue.put(report)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (within timeout), then close."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._sock.close()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None and not self._queue.empty():  # a burst: one write
                batch.append(self._queue.get())
            lines = "".join(json.dumps(r, separators=(",", ":")) + "\n"
                            for r in batch if r is not None)
            try:
                self._sock.sendall(lines.encode())
            except OSError as exc:
                log.error("lost the supervisor's report channel (%s): stopping", exc)
                self._on_broken()
                return
            if batch[-1] is None:
                return


def _connect(path: str) -> socket.socket:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _first_line(sock: socket.socket) -> dict:
    """The supervisor's one line (read byte-wise up to its end: nothing follows it)."""
    sock.settimeout(CONNECT_TIMEOUT_S)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the supervisor closed the report channel at once")
        data += chunk
    sock.settimeout(None)
    return json.loads(data)


class Listener:
    """The supervisor's end: sends each agent that connects the secrets, hands every report
    to on_report(conn, report) and on_report(conn, None) when the agent's connection ends.
    conn numbers connections."""

    def __init__(self, path: str, on_report: Callable[[int, dict | None], None],
                 secrets: dict[str, str] | None = None) -> None:
        self.path = path
        self._secrets = (json.dumps(secrets or {}) + "\n").encode()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        os.chmod(path, 0o600)  # only the speaker's user may report routes
        self._server.listen(4)
        self._on_report = on_report
        self._count = 0
        self._thread = threading.Thread(target=self._accept, name="channel", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            self._count += 1
            threading.Thread(
                target=self._read, args=(conn, self._count), name=f"agent-{self._count}",
                daemon=True,
            ).start()

    def _read(self, conn: socket.socket, number: int) -> None:
        try:
            with conn, conn.makefile("rb") as lines:
                conn.sendall(self._secrets)
                for line in lines:
                    try:
                        report = json.loads(line)
                    except ValueError:
                        log.warning("unreadable report from the agent: %r", line[:200])
                        continue
                    self._on_report(number, report)
        except OSError as exc:
            log.warning("report channel of agent %d failed: %s", number, exc)
        finally:
            self._on_report(number, None)

    def close(self) -> None:
        self._server.close()
