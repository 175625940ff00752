"""`netplan speaker`: the supervisor of one node's BGP speaker.

Processes:

    netplan speaker (this: supervisor)     status endpoints, report channel, TTL keepalive
      └─ exabgp (ExaBGP 5)                 the BGP sessions
           └─ python -m bgp.agent          store -> announcements, ExaBGP -> learned routes

The supervisor renders the node's ExaBGP configuration (bgp/render_exabgp.py) with the
agent as its API process, starts ExaBGP and keeps it running: when ExaBGP exits, or its
agent's report channel closes (ExaBGP would go on without it: `exabgp.api.respawn` is off,
so that an agent and the sessions it learned from always start together), ExaBGP is
stopped and started again after a backoff, and the new agent announces everything anew.
ExaBGP dies with the supervisor (PR_SET_PDEATHSIG), the agent with ExaBGP (end of input).
SIGTERM or SIGINT: ExaBGP is stopped in order, which closes every session with a Cease
notification, so peers drop the node's routes at once; then the supervisor exits 0.

State: the agent reports what it does over a unix socket (bgp/channel.py); the supervisor
folds the reports into its SpeakerStatus (bgp/status.py) and serves it over HTTP. The
status port thus stays up, and its counters keep counting, across ExaBGP restarts.

Route reflection: a node whose role is `reflector` is refused. ExaBGP does not reflect,
and doing it in the agent would mean re-implementing BGP's decision process in Python
(best path per prefix, originator-id and cluster-list loop checks, re-advertisement on
every session change) and pushing every reflected route through ExaBGP's text API once
per client: O(clients x routes) commands on the busiest nodes of a cluster. BIRD reflects
correctly and cheaply, and netplan already renders its reflector configuration:
reflectors run BIRD from `netplan render bird -f SPEC --node NAME`, their clients run
`netplan speaker` (tests/speaker/test_speaker_topologies.py runs exactly that).

TTL leases (etcd): with lease_ttl, the supervisor ties the node's leases to an etcd lease
and keeps it alive; if the speaker stops renewing it (the node is gone), etcd frees the
node's CIDRs after lease_ttl seconds.

The store is asked what it can do through the capabilities its back end declares
(ipam/store/base.py: SharedStore, TtlStore), never judged by its spelling.

Secrets: ExaBGP and the agent are started with an allow-list of variables (CHILD_VARIABLES),
so that neither holds the secrets of the supervisor's environment in its own, which any
process of the user can read (/proc/PID/environ, `ps e`): the MD5 passwords reach ExaBGP in
its configuration file (mode 0600), the etcd password reaches the agent over the report
channel (see Speaker._secrets).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from bgp.agent import AgentConfig, neighbors_by_family
from bgp.channel import Listener
from bgp.render_exabgp import render_exabgp
from bgp.status import SpeakerStatus, StatusServer, serve
from bgp.topology import Topology
from ipam.errors import InvalidInput, NetplanError, StoreError, StoreUnavailable
from ipam.store import Store, StoreOptions, open_store
from ipam.store.base import SharedStore, TtlStore

log = logging.getLogger("netplan.speaker")

RESTART_FIRST_S = 0.5  # ExaBGP restarts: first delay, doubled up to RESTART_MAX_S
RESTART_MAX_S = 30.0
STABLE_S = 60.0  # a run this long resets the backoff
AGENT_TIMEOUT_S = 30.0  # ExaBGP whose agent has not reported by then is restarted
STOP_TIMEOUT_S = 5.0  # SIGTERM to ExaBGP, then SIGKILL
ADDRESS_WAIT_S = 5.0  # a node address not (yet) on the host: waited for, then an error

# ExaBGP's environment (DESIGN section 8, bgp/render_exabgp.py).
EXABGP_ENV = {
    "exabgp.api.cli": "false",  # no CLI pipes
    "exabgp.daemon.user": "root",  # as root: do not drop to nobody, who cannot run the agent
    "exabgp.daemon.drop": "false",
    "exabgp.daemon.daemonize": "false",
    "exabgp.api.ack": "true",  # the agent reads every acknowledgement
    "exabgp.api.respawn": "false",  # the supervisor restarts ExaBGP and agent together
    "exabgp.api.encoder": "json",
    "exabgp.log.destination": "stdout",  # the supervisor's stderr
    "exabgp.log.level": "INFO",
    "exabgp.log.processes": "false",  # a line per announced route: 20,000 for 20,000
    "exabgp.log.statistics": "false",
    "exabgp.log.short": "true",
}

# What ExaBGP and its agent (which inherits ExaBGP's environment) keep of the supervisor's
# environment, besides EXABGP_ENV: an allow-list, so that a secret in it, today's or a
# future one, stays out unless named here.
CHILD_VARIABLES = frozenset({
    "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
    # the agent is `python -m bgp.agent`: how this interpreter finds the project
    "PYTHONPATH", "VIRTUAL_ENV",
    # the agent reaches etcd through gRPC as the supervisor does: through the same proxy
    "grpc_proxy", "https_proxy", "http_proxy", "no_proxy",
    "GRPC_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY",
})


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """ExaBGP's environment: what it and its agent need of environ, and EXABGP_ENV."""
    kept = {k: v for k, v in environ.items() if k in CHILD_VARIABLES or k.startswith("LC_")}
    return {**kept, **EXABGP_ENV}


class SpeakerError(NetplanError):
    """The speaker cannot start: a port taken, ExaBGP missing, a role it cannot play."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    topology: Topology  # planned with secrets resolved: MD5 passwords go into ExaBGP's file
    node: str
    store: str
    store_options: StoreOptions
    status_address: str = "127.0.0.1"
    status_port: int = 9179
    install_routes: bool = False
    lease_ttl: int | None = None  # seconds; etcd only


def find_exabgp() -> str:
    """The exabgp of this interpreter's environment (the project's dependency), else PATH."""
    beside = Path(sys.executable).parent / "exabgp"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("exabgp")
    if found is None:
        raise SpeakerError("exabgp is not installed; it is a dependency: pip install exabgp")
    return found


def _where(address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _why_not(exc: OSError) -> str:
    """A bind's failure, said in terms of what the user can change."""
    if exc.errno == errno.EADDRNOTAVAIL:
        return ("the address is not one of this host's: run the speaker on the node the "
                "spec gives it to, or correct the node's address in the spec")
    if exc.errno == errno.EADDRINUSE:
        return ("the port is taken (another BGP daemon: BIRD, a second speaker?); stop it, "
                "or give the node another bgpPort")
    if exc.errno == errno.EACCES:
        return "ports below 1024 need root or CAP_NET_BIND_SERVICE"
    return exc.strerror or str(exc)


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, called after
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In ExaBGP's process before exec: SIGTERM it when the supervisor dies, however."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Speaker:
    def __init__(self, config: SpeakerConfig) -> None:
        self._config = config
        self._entry = config.topology.node(config.node)
        if self._entry.role == "reflector":
            raise InvalidInput(
                "--node", config.node,
                "is a route reflector: ExaBGP does not reflect routes; run BIRD on it "
                f"(netplan render bird -f SPEC --node {config.node})",
            )
        if config.install_routes and shutil.which("ip") is None:
            raise InvalidInput("--install-routes", True, "needs iproute2's `ip` on PATH")
        self._store_location, self._ttl_store = self._open_store()
        self._exabgp = find_exabgp()
        self._stop = threading.Event()
        self._wake = threading.Event()  # ExaBGP exited, the agent left, or stop
        self._agent: int | None = None  # report connection of the running ExaBGP's agent
        self._agent_left = False
        self.status = SpeakerStatus(config.node, [peer.address for peer in self._entry.peers])

    def _open_store(self) -> tuple[str, Store | None]:
        """Open the store to ask it what the speaker needs of it: (where the agent, another
        process in another directory, opens it; with lease_ttl, the store to keep the TTL
        alive in, kept open, else None). It is not read: it may be down, or not yet exist."""
        c = self._config
        store = open_store(c.store, c.store_options)
        try:
            if not isinstance(store, SharedStore):
                raise InvalidInput("--store", c.store,
                                   "lives in one process: the speaker needs a file or etcd")
            if c.lease_ttl is not None and not isinstance(store, TtlStore):
                raise InvalidInput("--lease-ttl", c.lease_ttl,
                                   "needs an etcd store (--store etcd://...)")
            if not store.exists():
                log.warning("store %s does not exist: node %s announces nothing until "
                            "`netplan allocate` creates it", c.store, c.node)
            location = store.location()
        except BaseException:
            store.close()
            raise
        if c.lease_ttl is None:
            store.close()
            return location, None
        return location, store

    def _check_listen(self) -> None:
        """Refuse to start when ExaBGP could not listen on the node's BGP addresses: it would
        only log that, exit, and be restarted for ever while no session ever comes up (a
        spec run on the wrong host, a port another BGP daemon holds). Binding tests it; the
        socket is closed before ExaBGP starts (SO_REUSEADDR, as ExaBGP binds). An address
        that is missing is waited for ADDRESS_WAIT_S: at boot it may still be coming up
        (an interface being configured, IPv6 duplicate address detection)."""
        port = self._entry.node.port
        deadline = time.monotonic() + ADDRESS_WAIT_S
        for address in sorted({peer.local_address for peer in self._entry.peers},
                              key=lambda a: (a.version, int(a))):
            family = socket.AF_INET if address.version == 4 else socket.AF_INET6
            while True:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        probe.bind((str(address), port))
                        break
                    except OSError as exc:
                        if exc.errno != errno.EADDRNOTAVAIL or time.monotonic() > deadline:
                            raise SpeakerError(
                                f"node {self._config.node}: cannot listen on "
                                f"{_where(address, port)}: {_why_not(exc)}") from None
                if self._stop.wait(0.2):
                    return

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        """Run until request_stop() (SIGTERM, SIGINT); the exit code, 0."""
        # short: the report socket's path must fit a sockaddr_un (108 bytes)
        run_dir = Path(tempfile.mkdtemp(prefix="netplan-"))
        try:
            server = self._serve_status()
            try:
                self._check_listen()
                listener = Listener(str(run_dir / "agent.sock"), self._on_report,
                                    self._secrets())
                try:
                    conf = self._write_configuration(run_dir, listener.path)
                    keeper = self._start_ttl_keeper()
                    self._supervise(conf, run_dir)
                    if keeper is not None:
                        keeper.join(timeout=STOP_TIMEOUT_S)
                finally:
                    listener.close()
            finally:
                server.shutdown()
                server.server_close()
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        log.info("stopped")
        return 0

    def _serve_status(self) -> StatusServer:
        address, port = self._config.status_address, self._config.status_port
        try:
            server = serve(self.status, address, port)
        except OSError as exc:
            raise SpeakerError(f"status endpoint {address} port {port}: {exc.strerror}") from exc
        log.info("node %s: %d sessions; status on http://%s:%d/status", self._config.node,
                 len(self._entry.peers), address, server.server_address[1])
        return server

    def _secrets(self) -> dict[str, str]:
        """What the agent needs and must not find in its environment: the etcd password.

        It is sent over the report channel, the first line to each agent that connects
        (bgp/channel.py), rather than written to a file: a unix socket of mode 0600 in the
        supervisor's run directory (mkdtemp: mode 0700) lets only processes of this user
        connect, which could read the supervisor's own environment anyway; and the password
        is never at rest on a disk, not even in a run directory that a killed supervisor
        leaves behind.
        """
        password = self._config.store_options.etcd_password
        return {} if password is None else {"etcd_password": password}

    def _on_report(self, conn: int, report: dict | None) -> None:
        self.status.report(conn, report)
        if report is not None and "hello" in report:
            self._agent = conn
        elif report is None and conn == self._agent:
            self._agent_left = True  # ExaBGP would go on without it: restart both
            self._wake.set()

    def _write_configuration(self, run_dir: Path, socket_path: str) -> Path:
        c = self._config
        agent = AgentConfig(
            cluster=c.topology.cluster,
            node=c.node,
            # the agent runs in the run directory: the store as seen from any directory
            store=self._store_location,
            report=socket_path,
            prefixes_file=str(run_dir / "prefixes.json"),
            neighbors=neighbors_by_family([peer.address for peer in self._entry.peers]),
            install_routes=c.install_routes,
            store_options={f.name: getattr(c.store_options, f.name)
                           for f in fields(StoreOptions) if f.name != "etcd_password"},
        )
        agent_file = run_dir / "agent.json"
        agent_file.write_text(agent.to_json())
        process = (sys.executable, "-m", "bgp.agent", "--config", str(agent_file))
        text = render_exabgp(c.topology, c.node, show_secrets=True, process=process)
        conf = run_dir / "exabgp.conf"
        # it holds the MD5 passwords: the owner's only
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return conf

    # --- ExaBGP ---------------------------------------------------------------------------

    def _supervise(self, conf: Path, run_dir: Path) -> None:
        delay = RESTART_FIRST_S
        restart = False
        while not self._stop.is_set():
            started = time.monotonic()
            process = self._start_exabgp(conf, run_dir, restart)
            reason = self._wait_for_trouble(process)
            self._stop_exabgp(process)
            self.status.exabgp_stopped()
            if self._stop.is_set():
                return
            if time.monotonic() - started >= STABLE_S:
                delay = RESTART_FIRST_S
            log.warning("%s: starting ExaBGP again in %.1f s", reason, delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, RESTART_MAX_S)
            restart = True

    def _start_exabgp(self, conf: Path, run_dir: Path, restart: bool) -> subprocess.Popen:
        self._wake.clear()
        self._agent, self._agent_left = None, False
        process = subprocess.Popen(
            [self._exabgp, str(conf)],
            cwd=run_dir,
            env=child_environment(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self.status.exabgp_started(restart)
        log.info("ExaBGP started (pid %d)", process.pid)
        threading.Thread(target=self._reap, args=(process,), name="exabgp-wait",
                         daemon=True).start()
        return process

    def _reap(self, process: subprocess.Popen) -> None:
        process.wait()
        self._wake.set()

    def _wait_for_trouble(self, process: subprocess.Popen) -> str:
        """Block until ExaBGP needs restarting (the reason) or a stop is requested ("")."""
        deadline = time.monotonic() + AGENT_TIMEOUT_S
        while True:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._stop.is_set():
                return ""
            if process.poll() is not None:
                return f"ExaBGP exited with {process.returncode}"
            if self._agent_left:
                return "ExaBGP's agent stopped"
            if self._agent is None and time.monotonic() > deadline:
                return f"ExaBGP's agent did not report within {AGENT_TIMEOUT_S:.0f} s"

    def _stop_exabgp(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("ExaBGP did not stop within %.0f s: killing it", STOP_TIMEOUT_S)
                process.kill()
                process.wait()
        log.info("ExaBGP stopped (exit %s)", process.returncode)

    # --- TTL leases -----------------------------------------------------------------------

    def _start_ttl_keeper(self) -> threading.Thread | None:
        if self._ttl_store is None:
            return None
        thread = threading.Thread(target=self._keep_ttl,
                                  args=(self._ttl_store, self._config.lease_ttl), name="ttl",
                                  daemon=True)
        thread.start()
        return thread

    def _keep_ttl(self, store: Store, ttl: int) -> None:
        """Tie the node's leases to an etcd lease and renew it three times per ttl."""
        c = self._config
        held = None
        complained = False  # about the current spell of failures
        try:
            while True:
                try:
                    if held is None:
                        held = store.attach_ttl(c.topology.cluster, c.node, ttl)
                        log.info("node %s's leases are tied to etcd lease %x (ttl %d s)",
                                 c.node, held.id, ttl)
                    else:
                        held.keepalive()
                    complained = False
                except (StoreError, InvalidInput) as exc:
                    # etcd unreachable: renew once it is back; the lease expired, or nothing
                    # to tie yet (InvalidInput: not allocated): tie afresh when it can be
                    if not complained:
                        log.warning("TTL lease of node %s: %s", c.node, exc)
                        complained = True
                    if not isinstance(exc, StoreUnavailable):
                        held = None
                if self._stop.wait(ttl / 3):
                    return
        finally:
            store.close()


def run_speaker(config: SpeakerConfig) -> int:
    """Run a speaker in the main thread until SIGTERM or SIGINT; its exit code."""
    speaker = Speaker(config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: speaker.request_stop())
    return speaker.run()
