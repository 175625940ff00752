"""The API process ExaBGP runs for `netplan speaker`: `python -m bgp.agent --config FILE`.

ExaBGP starts it (the `process` of its configuration) and talks to it over its stdin and
stdout; the agent lives exactly as long as that ExaBGP. It
- follows the store: a snapshot, then the watch from the snapshot's revision, the node's
  leases becoming the prefixes it announces. When the store fails it keeps what it has,
  retries with backoff and, once back, starts over from a fresh snapshot, so whatever
  changed meanwhile is caught up as one diff;
- announces and withdraws the difference between what the store holds and what ExaBGP
  was told, batched (`announce attributes next-hop self nlri P1 P2 ...`), from one sender
  thread, so that a burst of store events becomes a few lines;
- reads everything ExaBGP writes, always, on a thread that does nothing slow: the
  acknowledgements (ExaBGP blocks once its pipe to us is full), session changes and the
  routes its peers send, kept as the table of learned routes. While lines are not yet
  acknowledged, each acknowledgement has the sender write the next PING, one in flight,
  which keeps ExaBGP from pausing between its passes (exabgp_api, at the top): 10,000
  routes go out in under a second instead of three. The reader itself never writes: a
  write can wait on ExaBGP, and ExaBGP waits on the reader;
- with install_routes, keeps the routing table of its network namespace in step with the
  learned routes (bgp/kernel.py), from a thread of its own;
- reports all of it to the supervisor over the report channel (bgp/channel.py).

The node's last known prefixes are kept in a file of the supervisor's run directory, so an
agent that starts (after an ExaBGP restart) while the store is down announces them at once.

ExaBGP stops in order with a `shutdown` notification, then SIGTERM: on either the agent
flushes the routes it installed. On a bare end of input (ExaBGP was killed) they stay for
the next agent, which adopts them and removes those not learned again within
STALE_GRACE_S.

Route reflection is not done here: see bgp/speaker.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING, BinaryIO

from bgp import channel, exabgp_api
from bgp.exabgp_api import Ack, PeerState, Pong, RouteUpdate, Shutdown
from bgp.model import Address, Network, network_text
from bgp.peers import DOWN, from_exabgp
from bgp.rib import AdjRibIn, Diff, LocalRib, table_diff
from ipam.allocation import Lease
from ipam.errors import StoreError
from ipam.net import Cidr
from ipam.store import LeaseEvent, Store, StoreOptions, open_store

if TYPE_CHECKING:
    from bgp.kernel import KernelRoutes  # imported by main() when installing routes

log = logging.getLogger("netplan.agent")

RETRY_FIRST_S = 0.2  # store retries: first delay, doubled up to RETRY_MAX_S
RETRY_MAX_S = 5.0
STALE_GRACE_S = 60.0  # adopted routes not learned again by then are removed


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What the supervisor tells the agent, as a JSON file (ExaBGP's `run` takes no quotes)."""

    cluster: str
    node: str
    store: str
    report: str  # the supervisor's report socket
    prefixes_file: str  # the node's last known prefixes, kept across agents
    # per IP version: the neighbors a line names, or None where every neighbor has the family;
    # a version without neighbors is absent, and its prefixes are not sent
    neighbors: dict[int, tuple[str, ...] | None]
    install_routes: bool = False
    # StoreOptions without the etcd password, which comes over the report channel
    store_options: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["neighbors"] = {str(v): list(n) if n is not None else None
                             for v, n in self.neighbors.items()}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AgentConfig:
        data = json.loads(text)
        data["neighbors"] = {int(v): tuple(n) if n is not None else None
                             for v, n in data["neighbors"].items()}
        return cls(**data)

    def options(self, secrets: Mapping[str, str]) -> StoreOptions:
        """The store's options with the secrets the supervisor sent (channel.Reporter)."""
        return StoreOptions(**self.store_options, etcd_password=secrets.get("etcd_password"))


def _network(cidr: Cidr) -> Network:
    """A lease's CIDR as the ipaddress network the RIB holds: from its integer, not its text
    (ip_network(str(...)) parses what was just printed, three times slower; 10,000 a start)."""
    return (IPv4Network if cidr.version == 4 else IPv6Network)((cidr.value, cidr.prefixlen))


def neighbors_by_family(peers: Sequence[Address]) -> dict[int, tuple[str, ...] | None]:
    """AgentConfig.neighbors for a node's peers."""
    result: dict[int, tuple[str, ...] | None] = {}
    for version in (4, 6):
        of = [str(p) for p in peers if p.version == version]
        if of:
            result[version] = None if len(of) == len(peers) else tuple(of)
    return result


class Agent:
    """The agent's state and its four activities (one thread each, see run())."""

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        commands: BinaryIO,
        report: Callable[[dict], None],
        kernel: KernelRoutes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._store = store
        self._commands = commands  # ExaBGP's stdin
        self._report = report
        self._kernel = kernel
        self._clock = clock
        self._neighbors = {
            v: tuple(ip_address(a) for a in n) if n is not None else None
            for v, n in config.neighbors.items()
        }
        self._cond = threading.Condition()  # guards everything below; notified on change
        self._rib = LocalRib()
        self._adj = AdjRibIn()
        self._leases: dict[tuple[str, str], Lease] = {}  # (pool, node) -> the cluster's leases
        self._kernel_dirty = kernel is not None
        self._stopping = False
        self._watch = None
        # one entry per command line written and not yet acknowledged: when its prefixes'
        # changes were seen
        self._unacked: deque[list[float]] = deque()
        self._pinging = False  # a PING written, its acknowledgement not yet read
        self._ping_due = False  # the reader asks the sender for a PING
        self._ponged = False  # PING's reply read: the next acknowledgement is PING's
        self._unsendable: set[int] = set()  # IP versions already warned about
        self.stopped = threading.Event()
        self.orderly = False  # ExaBGP shuts down (not killed)

    # --- lifecycle ------------------------------------------------------------------------

    def stop(self, orderly: bool = False) -> None:
        """Stop the activities; orderly: ExaBGP shuts down (not killed, not failed)."""
        if orderly:
            self.orderly = True
        with self._cond:
            self._stopping = True
            watch, self._watch = self._watch, None
            self._cond.notify_all()
        if watch is not None:
            watch.close()
        self.stopped.set()

    def run(self, exabgp_output: BinaryIO) -> None:
        """Start the activities; return once stopped (end of input, shutdown, stop())."""
        self._report(channel.hello())
        activities: dict[str, Callable[[], None]] = {
            "store": self.follow_store,
            "commands": self.send_commands,
            "exabgp": lambda: self.read_exabgp(exabgp_output),
        }
        if self._kernel is not None:
            activities["kernel"] = self.sync_kernel
        threads = {
            name: threading.Thread(target=self._guard(name, activity), name=name, daemon=True)
            for name, activity in activities.items()
        }
        for thread in threads.values():
            thread.start()
        self.stopped.wait()
        if self.orderly and self._kernel is not None:
            threads["kernel"].join(timeout=5.0)  # its last change must not follow the flush
            self._kernel.flush()
            log.info("removed the routes installed in this namespace")

    def _guard(self, name: str, activity: Callable[[], None]) -> Callable[[], None]:
        """An activity that fails stops the agent: ExaBGP is then restarted whole."""

        def guarded() -> None:
            try:
                activity()
            except Exception:
                log.exception("%s failed: stopping", name)
                self.stop()

        return guarded

    # --- the store -> the local RIB -------------------------------------------------------

    def follow_store(self) -> None:
        delay = RETRY_FIRST_S
        down = False
        synced = False  # this agent has read the store once
        cluster = self._config.cluster
        while not self._stopping:
            try:
                snapshot = self._store.snapshot()
                state = snapshot.clusters.get(cluster)
                leases = state.leases if state is not None else ()
                held = self._reset_leases(leases)
                log.info("store %s %s: revision %d, node %s holds %d prefixes",
                         self._store.url, "is back" if down else "read", snapshot.revision,
                         self._config.node, held)
                self._report(channel.store(True))
                down, delay, synced = False, RETRY_FIRST_S, True
                watch = self._store.watch(cluster, snapshot.revision + 1, known=leases,
                                          node=self._config.node)
                with self._cond:
                    self._watch = watch
                    if self._stopping:  # stop() came before the watch existed
                        watch.close()
                try:
                    for event in watch:
                        self._apply(event)
                finally:
                    watch.close()
            except StoreError as exc:
                if not down:
                    log.warning("store %s unreachable, announcing what it held last: %s",
                                self._store.url, exc)
                    self._report(channel.store(False, str(exc)))
                    if not synced:
                        self._load_prefixes()
                down = True
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _mine(self, lease: Lease) -> bool:
        return lease.node == self._config.node

    def _reset_leases(self, leases: Iterable[Lease]) -> int:
        """Take a fresh read of the cluster's leases; how many prefixes the node holds."""
        with self._cond:
            self._leases = {(x.pool, x.node): x for x in leases}
            mine = [_network(x.cidr) for x in self._leases.values() if self._mine(x)]
            self._rib.replace(mine, self._clock())
            self._cond.notify_all()
            return len(mine)

    def _apply(self, event: LeaseEvent) -> None:
        lease = event.lease
        key = (lease.pool, lease.node)
        with self._cond:
            if event.kind == "put":
                old = self._leases.get(key)
                self._leases[key] = lease
                if self._mine(lease):
                    if old is not None and old.cidr != lease.cidr:
                        self._rib.remove(_network(old.cidr), self._clock())
                    self._rib.add(_network(lease.cidr), self._clock())
            elif self._leases.get(key) == lease:
                del self._leases[key]
                if self._mine(lease):
                    self._rib.remove(_network(lease.cidr), self._clock())
            self._cond.notify_all()

    def _load_prefixes(self) -> None:
        """Announce the prefixes the last agent knew, until the store answers."""
        try:
            with open(self._config.prefixes_file) as f:
                data = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self._config.prefixes_file, exc)
            return
        with self._cond:
            if not self._rib.desired:
                self._rib.replace((ip_network(p) for p in data["prefixes"]), self._clock())
                self._cond.notify_all()

    def _save_prefixes(self, prefixes: Iterable[Network]) -> None:
        path = self._config.prefixes_file
        temporary = f"{path}.{os.getpid()}"
        try:
            with open(temporary, "w") as f:
                json.dump({"prefixes": [network_text(p) for p in prefixes]}, f)
            os.replace(temporary, path)  # whole or not at all, for the next agent
        except OSError as exc:  # the next agent then waits for the store: no reason to stop
            log.warning("could not keep the prefixes in %s: %s", path, exc)

    # --- the local RIB -> ExaBGP ----------------------------------------------------------

    def send_commands(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopping or self._rib.pending() or self._ping_due)
                if self._stopping:
                    return
                self._ping_due = False
                diff, since = self._rib.take() if self._rib.pending() else (None, {})
                desired = self._rib.desired
            if diff:
                # Kept before it is sent: an agent stopped (or killed) right after the send
                # must not leave the next agent an older list than its peers hold.
                self._save_prefixes(sorted(desired, key=lambda p: (p.version, p)))
                self._send(diff, since)
                self._report(channel.announced(diff))
            self._ping()

    def _send(self, diff: Diff[Network], since: Mapping[Network, float]) -> None:
        out = []
        for version in (4, 6):
            deleted = [p for p in diff.deleted if p.version == version]
            added = [p for p in diff.added if p.version == version]
            if not (deleted or added):
                continue
            if version not in self._neighbors:
                if version not in self._unsendable:
                    self._unsendable.add(version)
                    log.warning("no IPv%d session: IPv%d prefixes are not announced",
                                version, version)
                continue
            neighbors = self._neighbors[version]
            out += exabgp_api.withdraw(deleted, neighbors)
            out += exabgp_api.announce(added, neighbors)
        for line, prefixes in out:
            # queued before it is written: the acknowledgement may come before write() returns
            self._unacked.append([since[p] for p in prefixes])
            self._commands.write(line.encode() + b"\n")
        self._commands.flush()

    def _ping(self) -> None:
        """PING ExaBGP if lines are unacknowledged and no PING is in flight. Only this
        thread writes to ExaBGP: the reader, which asks for PINGs, must never wait on a write
        (ExaBGP reads our lines only while its own writes to the reader get through)."""
        with self._cond:
            if not self._unacked or self._pinging:
                return
            self._pinging = True
        self._commands.write(exabgp_api.PING.encode() + b"\n")
        self._commands.flush()

    # --- ExaBGP -> the agent --------------------------------------------------------------

    def read_exabgp(self, output: BinaryIO) -> None:
        for raw in output:
            line = raw.decode(errors="replace")
            try:
                message = exabgp_api.decode(line)
            except (ValueError, KeyError) as exc:
                log.warning("unreadable line from ExaBGP (%s): %r", exc, line[:200])
                continue
            if isinstance(message, Shutdown):
                log.info("ExaBGP shuts down")
                self.stop(orderly=True)
                return
            if isinstance(message, Ack):
                self._acknowledged(message)
            elif isinstance(message, Pong):
                self._ponged = True
            elif isinstance(message, PeerState):
                self._peer_changed(message)
            elif isinstance(message, RouteUpdate):
                self._learned(self._adj_update(message))
        log.info("ExaBGP closed our input: it is gone")
        self.stop()

    def _acknowledged(self, ack: Ack) -> None:
        seen = None
        with self._cond:
            if self._ponged:
                self._ponged = self._pinging = False
            elif self._unacked:
                seen = self._unacked.popleft()
            else:
                return  # not for a line of ours (ExaBGP answers an unknown command twice)
            if self._unacked and not self._pinging:
                self._ping_due = True  # the sender writes it: see _ping
                self._cond.notify_all()
        if seen is not None:
            now = self._clock()
            self._report(channel.acked((now - t for t in seen), 0 if ack.ok else 1))
            if not ack.ok:
                log.error("ExaBGP refused a command line of %d prefixes", len(seen))

    def _peer_changed(self, message: PeerState) -> None:
        state = from_exabgp(message.state)
        log.info("session with %s: %s%s", message.peer, state,
                 f" ({message.reason})" if message.reason else "")
        self._report(channel.peer(message.peer, state))
        if state == DOWN:
            with self._cond:
                diff = self._adj.drop_peer(message.peer)
            self._learned(diff)

    def _adj_update(self, update: RouteUpdate) -> Diff:
        with self._cond:
            return self._adj.update(update.peer, update.announced, update.withdrawn)

    def _learned(self, diff: Diff) -> None:
        if not diff:
            return
        self._report(channel.learned(diff))
        with self._cond:
            self._kernel_dirty = self._kernel is not None
            self._cond.notify_all()

    # --- learned routes -> the routing table ----------------------------------------------

    def sync_kernel(self) -> None:
        assert self._kernel is not None
        installed = self._kernel.read()
        # What the last agent installed stays until it is learned again (an ordinary route
        # from then on) or until the grace ends: its peers may not have resent it yet.
        adopted = dict(installed)
        if adopted:
            log.info("adopted %d routes a previous agent installed", len(adopted))
        grace_ends = self._clock() + STALE_GRACE_S

        def due() -> bool:
            return (self._stopping or self._kernel_dirty
                    or (bool(adopted) and self._clock() >= grace_ends))

        while True:
            with self._cond:
                self._cond.wait_for(due, max(0.0, grace_ends - self._clock()) if adopted else None)
                if self._stopping:
                    return
                self._kernel_dirty = False
                wanted = self._adj.selected(exclude=self._rib.desired)
            for prefix in wanted:
                adopted.pop(prefix, None)
            if self._clock() >= grace_ends:
                adopted.clear()
            wanted.update(adopted)
            # a refused route (a next hop on no connected network) is not in the table:
            # read back what is, so that the next diff starts from the truth
            installed = wanted if self._kernel.apply(table_diff(installed, wanted)) \
                else self._kernel.read()
            self._report(channel.installed(len(installed)))


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bgp.agent",
        description="netplan's ExaBGP API process (started by ExaBGP for `netplan speaker`).",
    )
    parser.add_argument("--config", required=True, help="the agent's JSON configuration")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s netplan-agent[%(process)d] %(levelname)s %(message)s",
    )
    with open(args.config) as f:
        config = AgentConfig.from_json(f.read())
    # Our stdout is ExaBGP's command pipe: keep it for commands only, and point fd 1 at
    # stderr, so that nothing a library prints can be read by ExaBGP as a command.
    commands = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    os.dup2(2, 1)
    # The report channel before the store: its first line brings the store's secrets.
    # Nothing is reported (nor can break) before agent.run(): `agent` is bound by then.
    reporter = channel.Reporter(config.report, on_broken=lambda: agent.stop())
    store = open_store(config.store, config.options(reporter.secrets))
    kernel = None
    if config.install_routes:
        from bgp.kernel import KernelRoutes

        kernel = KernelRoutes()
    agent = Agent(config, store, commands, reporter.send, kernel)
    # ExaBGP sends SIGTERM after its shutdown notification, which may not be read yet
    signal.signal(signal.SIGTERM, lambda *_: agent.stop(orderly=True))
    try:
        agent.run(sys.stdin.buffer)
    finally:
        reporter.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
