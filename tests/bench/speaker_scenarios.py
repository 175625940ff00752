"""Benchmarks 5 and 6: `netplan speaker` announcing to a real BIRD, and lease-to-route latency.

5. Announce N pod routes (10,000 in 5 runs and 65,536 in 3, whose one-a-line anchor alone
   takes over a minute a run; quick: 2,000 in 3) to BIRD. The clock starts when the process
   is started (`netplan speaker`, or `exabgp` for the anchors) and stops when BIRD holds all
   N routes: the whole cost a node pays on a (re)start, the speaker's own start included
   (supervisor, ExaBGP, agent, store read), which dominates at 2,000 routes. Not from the
   session's establishment: a feed that starts before the session is up has ExaBGP take in
   part of it before that moment, so "from established" credits whichever feed started
   first; that figure is a row of its own (5c) and a note, with the time to the session.
   Anchors, interleaved with netplan run by run: ExaBGP (the speaker's environment,
   bgp.speaker.EXABGP_ENV, and the speaker's neighbor) with a trivial API process that copies
   prepared lines to ExaBGP and drains its acknowledgements: `announce attributes next-hop
   self nlri` lines of 500 prefixes (the batched feed), and one `announce route P next-hop
   self` a line. Same BIRD configuration, prefixes and order. A third anchor, reported (5e):
   the batched feed whose process keeps one PING (`version`) in flight until ExaBGP has
   acknowledged every line, as netplan's agent does (ExaBGP idles 10 ms after every 50
   routes otherwise): what ExaBGP itself can do, against which netplan's own cost shows.
   Memory: the RSS of supervisor, ExaBGP and agent once BIRD holds every route, against
   ExaBGP and its feeder (batched).
6. Lease to route over etcd: a lease written with the store API (EtcdStore.update, what
   `netplan allocate` writes with) until its route is at BIRD, timed from the write's return
   (the transaction committed): one lease every 100 ms (p50 and p99; nearest rank, so the
   p99 of 50 is the largest), and a burst of 1,000 leases written back to back in
   transactions of 125 (the most of one node's leases etcd's 128 operations hold), timed
   from the last write's return to the last route at BIRD (6c) and from the first write's
   start (6d). The node's leases are in synthetic pools p00000, p00001, ... (one lease per
   pool and node, as in tests/speaker/test_speaker_scale.py).
   Anchor, measured in the same run, the sum of: raw etcd put-to-watch (pyetcd puts, the
   burst in transactions of 125, a watch thread stamping each key's event, from the put's
   return: the event can come before the put's reply, so a figure can be below zero) and
   raw ExaBGP-to-BIRD (ExaBGP with a trivial API process that forwards what the benchmark
   writes into a FIFO: `announce attributes next-hop self nlri P` a sample, the burst's
   1,000 prefixes as two lines in one write).

BIRD is polled with `show route count` (and `show protocols`) over its control socket, the
protocol birdc speaks, on one connection kept open: a birdc process a poll costs a fork and
exec, milliseconds, which would be the resolution of scenario 6. An arrival is stamped when
the first reply that shows it is read, so a latency is overestimated by at most one poll
window (from the previous query's start to this reply): about 2-3 ms in scenario 6, which
measures and prints it; 20 ms (50 ms at 65,536 routes) plus the query in scenario 5, whose
times are seconds. The final state is checked with birdc itself.

Everything runs on 127.0.0.0/8 (DESIGN section 7) on free ports in temporary directories,
BIRD without `protocol kernel`, every process ended by PID, also on error.

    python tests/bench/speaker_scenarios.py [--quick] [--only announce|latency]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for extra in (HERE, ROOT / "tests" / "speaker", ROOT / "tests" / "etcd", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from speaker_harness import (  # noqa: E402
    AS_NUMBER,
    Bird,
    Node,
    Processes,
    Speaker,
    bird_peer_config,
    cmdline,
    descendants,
    free_port,
    require,
    rss_kib,
    write_spec,
)

from bgp.speaker import EXABGP_ENV, find_exabgp  # noqa: E402
from ipam.allocation import Lease  # noqa: E402
from ipam.net import parse_cidr  # noqa: E402

CLUSTER = "demo"  # the harness's spec (write_spec)
NODE = "node-a"
PROTOCOL = "node_a"  # its protocol in bird_peer_config
BIRD_ADDRESS = "127.0.0.1"
NODE_ADDRESS = "127.0.0.2"
BATCH = 500  # prefixes a line of the batched anchor: bgp.exabgp_api.BATCH, netplan's own
TXN_LEASES = 125  # leases of one node per etcd write: etcd's 128 ops less the guard and record
PACE_S = 0.1  # scenario 6: one lease every 100 ms
POLL_S = 0.002  # scenario 6: pause between two BIRD queries


def _row(*args):
    from run import row  # the runner's row: one table and JSON format for every scenario

    return row(*args)


def cidr(index: int) -> str:
    """The index-th /24 of 10.0.0.0/8: every scenario's prefixes, netplan's and the anchors'."""
    return f"10.{index >> 8}.{index & 255}.0/24"


def lease(index: int) -> Lease:
    return Lease(CLUSTER, f"p{index:05d}", NODE, parse_cidr(cidr(index)))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with 50 samples, p99 is the largest."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(len(ordered) * q / 100))) - 1]


def note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


# --- BIRD's control socket ------------------------------------------------------------------


class BirdControl:
    """One connection to BIRD's control socket: the commands birdc sends, its replies read.

    A reply is lines `NNNN-text` or ` text`, ended by a line `NNNN text` (code, space)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._sock = socket.socket(socket.AF_UNIX)
            try:
                self._sock.connect(str(path))
                break
            except (ConnectionRefusedError, FileNotFoundError):
                # the socket's file exists a moment before BIRD listens on it
                self._sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self._file = self._sock.makefile("rb")
        self._reply()  # the greeting: 0001 BIRD ... ready.

    def _reply(self) -> str:
        lines = []
        while True:
            line = self._file.readline().decode(errors="replace")
            if not line:
                raise RuntimeError("BIRD closed its control socket")
            lines.append(line)
            if len(line) > 4 and line[:4].isdigit() and line[4] == " ":
                return "".join(lines)

    def query(self, command: str) -> str:
        self._sock.sendall(command.encode() + b"\n")
        return self._reply()

    def count(self) -> int:
        """Routes in BIRD's IPv4 table (master4)."""
        match = re.search(r"(\d+) of \d+ routes for \d+ networks in table master4",
                          self.query("show route count"))
        return int(match.group(1)) if match else 0

    def established(self, protocol: str) -> bool:
        return "Established" in self.query(f"show protocols {protocol}")

    def close(self) -> None:
        self._file.close()
        self._sock.close()


class Timeout(RuntimeError):
    pass


def wait_count(ctl: BirdControl, want: int, start: float, timeout: float, interval: float,
               diagnose: Callable[[], str]) -> tuple[float, float]:
    """Poll BIRD until its table holds want routes: (seconds from start to the session's
    establishment, to the last route), each stamped when the reply that shows it is read."""
    established = None
    while True:
        if established is None and ctl.established(PROTOCOL):
            established = time.monotonic() - start
        count = ctl.count()
        now = time.monotonic() - start
        if count >= want:
            if established is None:
                established = now
            return established, now
        if now > timeout:
            raise Timeout(f"bench: {count} of {want} routes at BIRD after {timeout:.0f} s\n"
                          f"{diagnose()}")
        time.sleep(interval)


class CountWatch(threading.Thread):
    """Polls BIRD's route count on its own connection; records every change of it.

    changes: (when the reply showing it was read, count). gaps: for each poll, the time from
    the previous query's start to this reply: the window in which a change it shows arrived.
    """

    def __init__(self, control: Path, interval: float = POLL_S) -> None:
        super().__init__(name="bird-poll", daemon=True)
        self._ctl = BirdControl(control)
        self._interval = interval
        self._done = threading.Event()
        self.changes: list[tuple[float, int]] = []
        self.gaps: list[float] = []
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            previous = None
            while not self._done.is_set():
                sent = time.monotonic()
                count = self._ctl.count()
                read = time.monotonic()
                if previous is not None:
                    self.gaps.append(read - previous)
                previous = sent
                if not self.changes or count != self.changes[-1][1]:
                    self.changes.append((read, count))
                time.sleep(self._interval)
        except BaseException as exc:  # noqa: BLE001 - reported by the waiting side
            self.failed = exc
        finally:
            self._ctl.close()

    def current(self) -> int:
        return self.changes[-1][1] if self.changes else -1

    def reached(self, count: int) -> float | None:
        """When the table first held at least count routes."""
        for when, seen in self.changes:
            if seen >= count:
                return when
        return None

    def wait(self, count: int, timeout: float, diagnose: Callable[[], str]) -> float:
        deadline = time.monotonic() + timeout
        while True:
            when = self.reached(count)
            if when is not None:
                return when
            if self.failed is not None:
                raise RuntimeError(f"bench: polling BIRD failed: {self.failed}")
            if time.monotonic() > deadline:
                raise Timeout(f"bench: {self.current()} routes at BIRD, waiting for {count}, "
                              f"after {timeout:.0f} s\n{diagnose()}")
            time.sleep(0.005)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def __enter__(self) -> CountWatch:
        self.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop()


@dataclass
class Peering:
    """A fresh BIRD, peer of node-a (127.0.0.2) on 127.0.0.1, and every process started."""

    processes: Processes
    bird: Bird
    node: Node
    port: int  # BIRD's


@contextlib.contextmanager
def peering(tmp: Path, bird_bin: str, birdc_bin: str) -> Iterator[Peering]:
    """BIRD in tmp (a new directory); on leaving, everything started is ended by PID."""
    tmp.mkdir()
    processes = Processes(tmp)
    try:
        bird = Bird(processes, "bird", bird_bin, birdc_bin)
        node = Node(NODE, NODE_ADDRESS)
        port = free_port(BIRD_ADDRESS)
        bird.start(bird_peer_config(BIRD_ADDRESS, port, [node]))
        yield Peering(processes, bird, node, port)
    finally:
        processes.stop_all()


# --- the raw ExaBGP anchor ------------------------------------------------------------------

# The anchors' API process: copies its source (a file, or a FIFO the benchmark writes into)
# to ExaBGP as it comes, and always drains ExaBGP's acknowledgements (DESIGN section 8: a
# process that does not read them blocks ExaBGP after about 13,000 commands).
FEEDER = """\
import os, sys, threading

def drain():
    while os.read(0, 65536):
        pass
    os._exit(0)  # ExaBGP is gone

threading.Thread(target=drain, daemon=True).start()
source = os.open(sys.argv[1], os.O_RDONLY)
while True:
    data = os.read(source, 65536)
    if not data:
        break
    while data:
        data = data[os.write(1, data):]
threading.Event().wait()
"""

# The same, keeping one PING (`version`) in flight until every line is acknowledged, as
# netplan's agent does (bgp/exabgp_api.py): ExaBGP then stops idling between its 50-route
# passes. `version` is answered out of turn: its reply line, then its `done`.
PING_FEEDER = """\
import os, queue, sys, threading

data = open(sys.argv[1], "rb").read()
left = data.count(b"\\n")  # lines not yet acknowledged
out = queue.Queue()  # one writer: the reader never waits on ExaBGP, which may wait on it

def send():
    while True:
        chunk = out.get()
        while chunk:
            chunk = chunk[os.write(1, chunk):]

threading.Thread(target=send, daemon=True).start()
out.put(data)
out.put(b"version\\n")
pong, buffer = False, b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        os._exit(0)  # ExaBGP is gone
    *lines, buffer = (buffer + chunk).split(b"\\n")
    for line in lines:
        if line.startswith(b"exabgp "):
            pong = True
        elif line == b"done":
            if not pong:
                left -= 1
                continue
            pong = False
            if left:
                out.put(b"version\\n")
"""


def exabgp_config(feeder: Path, source: Path, node: Node, bird_port: int) -> str:
    """The speaker's neighbor (bgp/render_exabgp.py, with `process`), fed by the feeder."""
    return (
        "process feed {\n"
        f"  run {sys.executable} {feeder} {source};\n"
        "  encoder json;\n"
        "}\n"
        f"neighbor {BIRD_ADDRESS} {{\n"
        f"  router-id {node.address};\n"
        f"  local-address {node.address};\n"
        f"  local-as {AS_NUMBER};\n"
        f"  peer-as {AS_NUMBER};\n"
        f"  listen {node.port};\n"
        f"  connect {bird_port};\n"
        "  family {\n    ipv4 unicast;\n  }\n"
        "  api {\n    processes [ feed ];\n    neighbor-changes;\n  }\n"
        "}\n"
    )


def batched_lines(indices: range) -> str:
    return "".join(
        "announce attributes next-hop self nlri "
        + " ".join(cidr(i) for i in indices[first:first + BATCH]) + "\n"
        for first in range(0, len(indices), BATCH))


def single_lines(indices: range) -> str:
    return "".join(f"announce route {cidr(i)} next-hop self\n" for i in indices)


def start_raw_exabgp(processes: Processes, name: str, source: Path, node: Node,
                     bird_port: int, ping: bool = False):
    feeder = processes.tmp / "feeder.py"
    feeder.write_text(PING_FEEDER if ping else FEEDER)
    conf = processes.tmp / f"{name}.conf"
    conf.write_text(exabgp_config(feeder, source, node, bird_port))
    return processes.start(name, [find_exabgp(), str(conf)], env={**os.environ, **EXABGP_ENV})


def rss_by_role(pid: int) -> dict[str, int]:
    """RSS (KiB) of a process and its descendants: supervisor or exabgp (pid), agent, feeder."""
    sizes = {"supervisor" if "planner.cli" in cmdline(pid) else "exabgp": rss_kib(pid)}
    for child in descendants(pid):
        line = cmdline(child)
        role = ("agent" if "bgp.agent" in line else "feeder" if "feeder.py" in line
                else "exabgp" if "exabgp" in line else f"pid {child}")
        sizes[role] = sizes.get(role, 0) + rss_kib(child)
    return sizes


# --- 5. announce N routes -------------------------------------------------------------------


@dataclass
class Announced:
    took: float  # process start -> BIRD holds every route
    established: float  # process start -> session established
    rss: dict[str, int]  # the processes' RSS then (KiB), by role


def announce_once(kind: str, routes: int, tmp: Path, bird_bin: str, birdc_bin: str
                  ) -> Announced:
    """One run: a fresh BIRD and a fresh speaker (netplan) or ExaBGP feed (batched, pinged:
    batched with PING, single)."""
    from test_speaker_scale import fill_store

    with peering(tmp, bird_bin, birdc_bin) as p, \
            contextlib.closing(BirdControl(p.bird.control)) as ctl:
        # everything prepared before the clock starts: the store, or the feed's lines
        if kind == "netplan":
            spec = write_spec(tmp / "spec.yaml", [p.node], peers=[(BIRD_ADDRESS, p.port)])
            db = str(tmp / "netplan.db")
            fill_store(db, [lease(i) for i in range(routes)]).close()
            speaker = Speaker(p.processes, spec, NODE, db)
            start = time.monotonic()
            pid = speaker.start().proc.pid
        else:
            source = tmp / "feed.txt"
            lines = single_lines if kind == "single" else batched_lines
            source.write_text(lines(range(routes)))
            start = time.monotonic()
            pid = start_raw_exabgp(p.processes, "exabgp", source, p.node, p.port,
                                   ping=kind == "pinged").pid
        interval = 0.02 if routes <= 20_000 else 0.05
        established, took = wait_count(ctl, routes, start, 300, interval, p.processes.logs)
        rss = rss_by_role(pid)
        if p.bird.count() != routes:  # birdc itself agrees
            raise RuntimeError(f"bench: birdc counts {p.bird.count()} routes, not {routes}")
        return Announced(took, established, rss)


def scenario_announce(quick: bool) -> list[dict]:
    bird_bin, birdc_bin = require("bird", "bird2"), require("birdc", "bird2")
    sizes = [(2000, 3)] if quick else [(10_000, 5), (65_536, 3)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="netplan-bench-speaker-") as tmp:
        for routes, runs in sizes:
            samples: dict[str, list[Announced]] = {"netplan": [], "batched": [], "pinged": [],
                                                "single": []}
            for run in range(runs):  # interleaved: all four see the same machine
                for kind, got in samples.items():
                    got.append(announce_once(kind, routes, Path(tmp) / f"{kind}-{routes}-{run}",
                                             bird_bin, birdc_bin))
            took = {k: statistics.median(s.took for s in v) for k, v in samples.items()}
            est = {k: statistics.median(s.established for s in v) for k, v in samples.items()}
            after = {k: statistics.median(s.took - s.established for s in v)
                     for k, v in samples.items()}
            rss = {k: statistics.median(sum(s.rss.values()) for s in v) / 1024
                   for k, v in samples.items()}
            n = f"{routes:,}"
            runs_text = f"{runs} runs" + ("" if runs >= 5 or quick else " (5 too long)")
            note(f"5, {n} routes, medians of {runs} runs (s: process start to the session / "
                 "to all routes / the session to all routes): " + "; ".join(
                     f"{k} {est[k]:.2f} / {took[k]:.2f} / {after[k]:.2f}" for k in took))
            note(f"5, {n} routes, RSS (MiB) once BIRD held them, last run: " + "; ".join(
                f"{kind} " + ", ".join(f"{role} {kib / 1024:.0f}"
                                       for role, kib in got[-1].rss.items())
                for kind, got in samples.items()))
            rows.append(_row(f"5. {n} routes to BIRD, {runs_text}", "s",
                             took["netplan"], took["batched"], "<= 1.2x batched feed",
                             took["netplan"] <= 1.2 * took["batched"]))
            rows.append(_row(f"5b. {n}: vs one route a line", "s", took["netplan"],
                             took["single"], "<= 0.5x (2x faster)",
                             took["netplan"] <= 0.5 * took["single"]))
            rows.append(_row(f"5c. {n}: from session up to all routes", "s",
                             after["netplan"], after["batched"], "reported", True))
            rows.append(_row(f"5d. {n}: RSS speaker vs ExaBGP+feeder", "MiB",
                             rss["netplan"], rss["batched"], "reported", True))
            rows.append(_row(f"5e. {n}: vs the batched feed with PING", "s", took["netplan"],
                             took["pinged"], "reported", True))
    return rows


# --- 6. lease to route ----------------------------------------------------------------------


@dataclass
class Latencies:
    paced: list[float]  # each prefix, one written every PACE_S: its write's return -> arrival
    burst_lag: float  # the burst's last write's return -> its last prefix's arrival
    burst_total: float  # the burst's first write's start -> its last prefix's arrival
    burst_write: float  # the burst's first write's start -> its last write's return


def paced_then_burst(write: Callable[[range], float], arrival: Callable[[int], float],
                     paced: int, burst: int, chunk: int) -> Latencies:
    """Prefixes 0.. of a run: `paced` written one every PACE_S, then `burst` back to back,
    `chunk` a write. write(indices) writes them and returns when it returned; arrival(n)
    waits until the first n prefixes have arrived and returns when the n-th did (writes
    are in order, and when paced each arrives before the next is written)."""
    latencies = []
    due = time.monotonic()
    for k in range(paced):
        due += PACE_S
        time.sleep(max(0.0, due - time.monotonic()))
        written = write(range(k, k + 1))
        latencies.append(arrival(k + 1) - written)
    time.sleep(0.5)  # the paced part has settled
    start = last = time.monotonic()
    for at in range(paced, paced + burst, chunk):
        last = write(range(at, min(paced + burst, at + chunk)))
    arrived = arrival(paced + burst)
    return Latencies(latencies, arrived - last, arrived - start, last - start)


def _netplan_latency(etcd, tmp: Path, paced: int, burst: int, bird_bin: str, birdc_bin: str
                     ) -> tuple[Latencies, list[float]]:
    """netplan: leases written with EtcdStore.update, routes counted at BIRD; the poll
    windows."""
    from ipam.store import StoreOptions, open_store
    from ipam.state import ClusterRecord, ClusterWrite

    def write(indices: range) -> float:
        leases = tuple(lease(1 + i) for i in indices)  # lease 0: the warm-up's
        store.update(lambda _: (ClusterWrite(CLUSTER, ClusterRecord(CLUSTER), create=leases),
                                None))
        return time.monotonic()

    with peering(tmp, bird_bin, birdc_bin) as p, \
            contextlib.closing(open_store(etcd.url, StoreOptions(timeout=10))) as store:
        spec = write_spec(tmp / "spec.yaml", [p.node], peers=[(BIRD_ADDRESS, p.port)])
        Speaker(p.processes, spec, NODE, etcd.url).start()
        with CountWatch(p.bird.control) as watch:
            # warm-up: the session, the store's channel and the whole path carry one lease
            store.update(lambda _: (ClusterWrite(CLUSTER, ClusterRecord(CLUSTER),
                                                 create=(lease(0),)), None))
            watch.wait(1, 30, p.processes.logs)
            time.sleep(0.5)
            result = paced_then_burst(
                write, lambda n: watch.wait(1 + n, 60, p.processes.logs), paced, burst,
                TXN_LEASES)
        _check_routes(p.bird, range(1 + paced + burst))
        return result, watch.gaps


def _exabgp_latency(tmp: Path, paced: int, burst: int, bird_bin: str, birdc_bin: str
                    ) -> tuple[Latencies, list[float]]:
    """The raw ExaBGP anchor: each write's lines (`announce attributes next-hop self nlri`,
    500 prefixes a line) written into the feeder's FIFO; the burst in one write."""
    with peering(tmp, bird_bin, birdc_bin) as p:
        fifo = tmp / "feed.fifo"
        os.mkfifo(fifo)
        # read and write: the open does not wait for the feeder (which never sees an end)
        pipe = os.open(fifo, os.O_RDWR)
        try:
            def write(indices: range) -> float:
                os.write(pipe, batched_lines(range(1 + indices[0], 1 + indices[-1] + 1))
                         .encode())
                return time.monotonic()

            start_raw_exabgp(p.processes, "exabgp", fifo, p.node, p.port)
            with CountWatch(p.bird.control) as watch:
                os.write(pipe, batched_lines(range(1)).encode())  # the warm-up's prefix 0
                watch.wait(1, 30, p.processes.logs)
                time.sleep(0.5)
                result = paced_then_burst(
                    write, lambda n: watch.wait(1 + n, 60, p.processes.logs), paced, burst,
                    burst)
        finally:
            os.close(pipe)
        _check_routes(p.bird, range(1 + paced + burst))
        return result, watch.gaps


def _etcd_put_to_watch(etcd, paced: int, burst: int) -> Latencies:
    """The raw etcd anchor: pyetcd puts (the burst in transactions of TXN_LEASES puts), a
    watch thread stamping each key's first event."""
    prefix = "/bench6-raw/"
    arrivals: dict[str, float] = {}
    seen = threading.Condition()

    def key(index: int) -> str:
        return f"{prefix}p{index:05d}"

    def on_event(response) -> None:
        if isinstance(response, Exception):
            return
        now = time.monotonic()
        with seen:
            for event in response.events:
                arrivals.setdefault(event.key.decode(), now)
            seen.notify_all()

    def arrival(n: int) -> float:
        with seen:
            if not seen.wait_for(lambda: key(n - 1) in arrivals, timeout=10):
                raise Timeout(f"bench: no etcd watch event for {key(n - 1)}")
            return arrivals[key(n - 1)]

    with etcd.client() as client:
        t = client.transactions

        def write(indices: range) -> float:
            if len(indices) == 1:
                client.put(key(indices[0]), cidr(indices[0]))
            else:
                client.transaction(compare=[], failure=[],
                                   success=[t.put(key(i), cidr(i)) for i in indices])
            return time.monotonic()

        client.get("/warm-up")
        watch_id = client.add_watch_prefix_callback(prefix, on_event)
        try:
            return paced_then_burst(write, arrival, paced, burst, TXN_LEASES)
        finally:
            client.cancel_watch(watch_id)


def scenario_latency(quick: bool) -> list[dict]:
    from store_scenarios import local_etcd

    bird_bin, birdc_bin = require("bird", "bird2"), require("birdc", "bird2")
    paced, burst = (20, 200) if quick else (50, 1000)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # the poll thread is not held up by this thread's work
    try:
        with tempfile.TemporaryDirectory(prefix="netplan-bench-lease-") as tmp, \
                local_etcd() as etcd:
            ours, ours_gaps = _netplan_latency(etcd, Path(tmp) / "netplan", paced, burst,
                                               bird_bin, birdc_bin)
            raw_etcd = _etcd_put_to_watch(etcd, paced, burst)
            raw_bgp, raw_gaps = _exabgp_latency(Path(tmp) / "raw", paced, burst, bird_bin,
                                                birdc_bin)
    finally:
        sys.setswitchinterval(switch)

    def ms(seconds: float) -> float:
        return seconds * 1000

    def p(values: list[float], q: float) -> float:
        return ms(percentile(values, q))

    gaps = ours_gaps + raw_gaps
    note(f"6, BIRD polled every {ms(POLL_S):.0f} ms plus the query; poll window (previous "
         f"query's start to this reply) median {ms(statistics.median(gaps)):.1f} ms, p99 "
         f"{p(gaps, 99):.1f}, max {ms(max(gaps)):.1f}: each latency at BIRD is overestimated "
         "by at most its window")
    note(f"6, {paced} leases at 10/s (ms, p50/p99/max): netplan {p(ours.paced, 50):.1f}/"
         f"{p(ours.paced, 99):.1f}/{ms(max(ours.paced)):.1f}; etcd put-to-watch "
         f"{p(raw_etcd.paced, 50):.2f}/{p(raw_etcd.paced, 99):.2f}/"
         f"{ms(max(raw_etcd.paced)):.2f}; ExaBGP-to-BIRD {p(raw_bgp.paced, 50):.1f}/"
         f"{p(raw_bgp.paced, 99):.1f}/{ms(max(raw_bgp.paced)):.1f}")
    note(f"6, burst of {burst:,} (ms: writing it / its last write to its last arrival / its "
         f"start to its last arrival): netplan {ms(ours.burst_write):.0f} / "
         f"{ms(ours.burst_lag):.0f} / {ms(ours.burst_total):.0f}; etcd put-to-watch "
         f"{ms(raw_etcd.burst_write):.0f} / {ms(raw_etcd.burst_lag):.1f} / "
         f"{ms(raw_etcd.burst_total):.0f}; ExaBGP-to-BIRD (one write) - / "
         f"{ms(raw_bgp.burst_lag):.0f} / {ms(raw_bgp.burst_total):.0f}")
    return [
        _row(f"6. lease to BIRD at 10/s, p50 of {paced}", "ms", p(ours.paced, 50),
             p(raw_etcd.paced, 50) + p(raw_bgp.paced, 50), "reported", True),
        _row(f"6b. lease to BIRD at 10/s, p99 of {paced}", "ms", p(ours.paced, 99),
             p(raw_etcd.paced, 99) + p(raw_bgp.paced, 99), "< 50 ms",
             percentile(ours.paced, 99) < 0.050),
        _row(f"6c. burst of {burst:,}: last write to last route", "ms", ms(ours.burst_lag),
             ms(raw_etcd.burst_lag + raw_bgp.burst_lag), "< 500 ms", ours.burst_lag < 0.5),
        _row(f"6d. burst of {burst:,}: first write to last route", "ms", ms(ours.burst_total),
             ms(raw_etcd.burst_total + raw_bgp.burst_total), "reported", True),
    ]


def _check_routes(bird: Bird, indices: range) -> None:
    """birdc's view at the end: exactly these prefixes, each with the node as next hop."""
    routes = bird.routes()
    want = {cidr(i): [NODE_ADDRESS] for i in indices}
    if routes != want:
        missing = sorted(set(want) - set(routes))[:5]
        extra = sorted(set(routes) - set(want))[:5]
        raise RuntimeError(f"bench: BIRD holds {len(routes)} routes, not {len(want)} "
                           f"(missing {missing}, extra {extra}, or other next hops)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", choices=["announce", "latency"])
    args = parser.parse_args()
    rows = []
    if args.only in (None, "announce"):
        rows += scenario_announce(args.quick)
    if args.only in (None, "latency"):
        rows += scenario_latency(args.quick)
    print(f"{'scenario':<52} {'unit':>5} {'netplan':>10} {'anchor':>10} {'ratio':>7}  "
          f"{'goal':<22} met")
    for r in rows:
        anchor = "-" if r["anchor"] is None else f"{r['anchor']:.4f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['scenario']:<52} {r['unit']:>5} {r['netplan']:>10.4f} {anchor:>10} "
              f"{ratio:>7}  {r['goal']:<22} {'yes' if r['met'] else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
