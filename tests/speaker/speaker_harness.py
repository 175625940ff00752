"""Real processes for the speaker tests: BIRD, `netplan speaker`, specs and stores.

Everything runs on 127.0.0.0/8 (DESIGN section 7) on free high ports, in temporary
directories, or inside a network namespace the test creates; BIRD configurations have no
`protocol kernel`. Every process is ended by its PID (Processes.stop_all), and every wait
is bounded, so that a session that never comes up fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

WAIT = 30.0  # seconds: the bound of every wait, far above what loopback sessions need
AS_NUMBER = 64512

# `netplan` as a process, from this interpreter (the project need not be on PATH)
NETPLAN = [sys.executable, "-c", "import sys; from planner.cli import main; sys.exit(main())"]


def require(program: str, package: str) -> str:
    path = shutil.which(
        program, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    )
    if path is None:
        pytest.fail(f"{program} is not installed; the speaker tests need it: {package}",
                    pytrace=False)
    return path


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], what: str, diagnose: Callable[[], str] = str,
             timeout: float = WAIT, interval: float = 0.05) -> float:
    """Poll until condition() is true; the seconds it took. Fails the test at timeout."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"no {what} after {timeout:.0f} s\n{diagnose()}", pytrace=False)
        time.sleep(interval)


def timed(change: Callable[[], object], arrived: Callable[[], float]) -> tuple[float, float]:
    """Seconds from a store change until arrived() (which waits) sees it: counted from the
    change's return (at most the true latency: the command prints after it writes) and
    from its start (at least the true latency: it plans before it writes)."""
    start = time.monotonic()
    change()
    returned = time.monotonic()
    waited = arrived()
    return waited, waited + (returned - start)


def netplan(*args: str) -> None:
    """Run a netplan command in this process (the store written when it returns); must pass.

    In process, not as a child, so that a test times the store's change, not the start of
    an interpreter."""
    from planner.cli import main

    code = main(list(args))
    assert code == 0, f"netplan {' '.join(args)} -> exit {code}"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETPLAN_")}
    env["NO_COLOR"] = "1"
    return env


@dataclass
class Node:
    name: str
    address: str
    port: int = 0  # 0: a free port of address

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port(self.address)


def write_spec(path: Path, nodes: Sequence[Node], *, peers: Sequence[tuple[str, int]] = (),
               topology: str = "none", reflectors: Sequence[str] = (),
               cluster: str = "demo") -> Path:
    """A flannel-style spec: one /24 per node of 10.244.0.0/16, iBGP AS 64512."""
    bgp: dict = {"asNumber": AS_NUMBER, "topology": topology}
    if peers:
        bgp["peers"] = [{"address": a, "asNumber": AS_NUMBER, "port": p} for a, p in peers]
    if reflectors:
        bgp["routeReflectors"] = {"names": list(reflectors)}
    spec = {
        "cluster": cluster,
        "nodes": [{"name": n.name, "address": n.address, "bgpPort": n.port} for n in nodes],
        "bgp": bgp,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def bird_peer_config(address: str, port: int, speakers: Sequence[Node], *,
                     reflector: bool = False) -> str:
    """BIRD as every speaker's external iBGP peer (or their route reflector), no kernel."""
    rr = "  rr client;\n  rr cluster id 127.0.0.1;\n" if reflector else ""
    protocols = "".join(
        f"protocol bgp {n.name.replace('-', '_')} from speakers {{\n"
        f"  neighbor {n.address} port {n.port} as {AS_NUMBER};\n}}\n"
        for n in speakers
    )
    return (
        f"router id {address};\n"
        "protocol device {\n}\n"
        "template bgp speakers {\n"
        f"  local {address} port {port} as {AS_NUMBER};\n"
        "  strict bind on;\n"
        "  connect retry time 1;\n"
        "  error wait time 1, 5;\n"
        f"{rr}"
        f"  ipv4 {{ import all; export {'all' if reflector else 'none'}; }};\n"
        "}\n"
        f"{protocols}"
    )


@dataclass
class Proc:
    """A started process, its log, and how to end it."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; the exit code."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
        return self.popen.wait(timeout=timeout)


def children(pid: int) -> list[int]:
    """PIDs whose parent is pid, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (field 2) may hold spaces: fields after its ')' are safe
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    result = []
    for child in children(pid):
        result.append(child)
        result.extend(descendants(child))
    return result


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_kib(pid: int) -> int:
    """Resident memory of one process (VmRSS), KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Processes:
    """Every process a test starts; stop_all() ends them (and what they started) by PID."""

    tmp: Path
    started: list[Proc] = field(default_factory=list)
    # PIDs of processes the tested ones started (ExaBGP, agents), seen while they ran
    offspring: set[int] = field(default_factory=set)

    def start(self, name: str, command: list[str], **kwargs) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                     cwd=self.tmp, **kwargs)
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def note_offspring(self, proc: Proc) -> list[int]:
        found = descendants(proc.pid)
        self.offspring.update(found)
        return found

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid})\n{_tail(p.log)}" for p in self.started)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.alive():
                self.offspring.update(descendants(proc.pid))
        for proc in reversed(self.started):
            proc.stop()
        deadline = time.monotonic() + 10
        for pid in self.offspring:
            # the supervisor ends ExaBGP, which ends its agent; anything left is a bug,
            # ended here so that it cannot disturb other tests
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _tail(path: Path, size: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-size:]


class Bird:
    """One BIRD daemon in tmp (its control socket, PID file and log there)."""

    def __init__(self, processes: Processes, name: str, bird: str, birdc: str,
                 netns: str | None = None) -> None:
        self.processes = processes
        self.name = name
        self.bird_bin, self.birdc_bin = bird, birdc
        self.prefix = ["ip", "netns", "exec", netns] if netns else []
        self.control = processes.tmp / f"{name}.ctl"
        self.conf = processes.tmp / f"{name}.conf"
        self.proc: Proc | None = None

    def start(self, config: str | None = None) -> None:
        if config is not None:
            assert "protocol kernel" not in config
            self.conf.write_text(config)
        self.control.unlink(missing_ok=True)
        # -f keeps BIRD a child of the test, whose PID the teardown ends
        command = [*self.prefix, self.bird_bin, "-f", "-s", str(self.control),
                   "-P", str(self.processes.tmp / f"{self.name}.pid"), "-c", str(self.conf)]
        self.proc = self.processes.start(self.name, command)
        wait_for(self.control.exists, f"{self.name} control socket", self.processes.logs)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop()

    def birdc(self, *command: str) -> str:
        result = subprocess.run([self.birdc_bin, "-s", str(self.control), *command],
                                capture_output=True, text=True, timeout=30, check=False)
        return result.stdout + result.stderr

    def routes(self) -> dict[str, list[str]]:
        """prefix -> the BGP next hops of its routes, from `show route all`."""
        routes: dict[str, list[str]] = {}
        prefix = None
        for line in self.birdc("show", "route", "all").splitlines():
            head = re.match(r"^(\d+\.\d+\.\d+\.\d+/\d+|[0-9a-f:]+/\d+)\s", line)
            if head:
                prefix = head.group(1)
                routes.setdefault(prefix, [])
            hop = re.match(r"^\s+BGP\.next_hop:\s+(\S+)", line)
            if hop and prefix is not None:
                routes[prefix].append(hop.group(1))
        return routes

    def count(self) -> int:
        """Routes in BIRD's IPv4 table."""
        match = re.search(r"(\d+) of \d+ routes", self.birdc("show", "route", "count"))
        return int(match.group(1)) if match else 0

    def established(self, protocol: str) -> bool:
        return "Established" in self.birdc("show", "protocols", protocol)


FETCH = """\
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as exc:
    code, body = exc.code, exc.read()
except OSError:
    code, body = 0, b""
sys.stdout.write(f"{code}\\n"); sys.stdout.flush(); sys.stdout.buffer.write(body)
"""


def _get_in(netns: str, port: int, path: str) -> tuple[int, str]:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", FETCH,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=30, check=False)
    code, _, body = result.stdout.partition("\n")
    return int(code or 0), body


class Speaker:
    """`netplan speaker` for one node, as a process, and its status endpoints."""

    def __init__(self, processes: Processes, spec: Path, node: str, store: str,
                 *extra: str, netns: str | None = None, name: str | None = None,
                 options: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        """options: global options (before the command: --etcd-ca ...); env: variables set
        on top of the test's environment, which is scrubbed of NETPLAN_*."""
        self.processes = processes
        self.spec, self.node, self.store, self.extra = spec, node, store, extra
        self.options, self.env = tuple(options), env or {}
        self.name = name or f"speaker-{node}"
        self.netns = netns
        self.port = free_port("127.0.0.1")
        self.proc: Proc | None = None

    def start(self) -> Speaker:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        command = [*prefix, *NETPLAN, *self.options, "speaker", "-f", str(self.spec),
                   "--node", self.node, "--store", self.store, "--status-port", str(self.port),
                   *self.extra]
        self.proc = self.processes.start(self.name, command, env={**_env(), **self.env})
        return self

    def _get(self, path: str) -> tuple[int, str]:
        if self.netns:  # the endpoint is on the namespace's loopback: ask from inside
            return _get_in(self.netns, self.port, path)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def status(self) -> dict:
        code, body = self._get("/status")
        return json.loads(body) if code == 200 else {}

    def healthy(self) -> bool:
        return self._get("/healthz")[0] == 200

    def metrics(self) -> dict[str, float]:
        """Samples without labels or with their labels in the name, as Prometheus prints."""
        _, body = self._get("/metrics")
        samples = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def learned(self) -> set[tuple[str, str]]:
        return {(r["prefix"], r["nextHop"]) for r in self.status().get("learned", [])}

    def established(self) -> bool:
        peers = self.status().get("peers", [])
        return bool(peers) and all(p["state"] == "established" for p in peers)

    def exabgp_pid(self) -> int:
        assert self.proc is not None
        pids = [p for p in self.processes.note_offspring(self.proc)
                if "exabgp" in cmdline(p) and "bgp.agent" not in cmdline(p)]
        assert pids, f"no ExaBGP under the speaker of {self.node}\n{self.processes.logs()}"
        return pids[0]

    def agent_pid(self) -> int:
        assert self.proc is not None
        pids = [p for p in self.processes.note_offspring(self.proc) if "bgp.agent" in cmdline(p)]
        assert pids, f"no agent under the speaker of {self.node}\n{self.processes.logs()}"
        return pids[0]

    def tree_rss_kib(self) -> int:
        """Resident memory of the supervisor, ExaBGP and the agent together."""
        assert self.proc is not None
        return sum(rss_kib(p) for p in [self.proc.pid, *descendants(self.proc.pid)])

    def stop(self) -> int | None:
        assert self.proc is not None
        self.processes.note_offspring(self.proc)
        return self.proc.stop()
