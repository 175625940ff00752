"""Real BGP between rendered configurations: BIRD on one node, ExaBGP on another.

Everything runs on 127.0.0.0/8 (DESIGN section 7) on free high ports, in temporary
directories, without `protocol kernel`; every process is ended by its PID. Waits are
bounded, so a session that never comes up fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from bgp.render_bird import render_bird
from bgp.render_exabgp import render_exabgp

WAIT = 30.0  # seconds: a bound on every wait, far above what a loopback session needs

# The API process ExaBGP runs: it announces the node's pod CIDR with next hop self, then
# drains ExaBGP's acknowledgements and updates (or ExaBGP blocks) into a log of JSON lines.
API_PROCESS = """\
import sys
sys.stdout.write("announce route {cidr} next-hop self\\n")
sys.stdout.flush()
with open({log!r}, "a") as log:
    for line in sys.stdin:
        log.write(line)
        log.flush()
"""


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def listening(address: str, port: int) -> bool:
    """Whether a TCP socket listens on address:port (IPv4), read from /proc/net/tcp."""
    wanted = f"{socket.inet_aton(address)[::-1].hex().upper()}:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(row.split()[1] == wanted and row.split()[3] == "0A" for row in rows)


def wait_for(condition: Callable[[], bool], what: str, diagnose: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"no {what} after {WAIT:.0f} s\n{diagnose()}", pytrace=False)


class Speakers:
    """Starts BIRD and ExaBGP in a temporary directory, and ends them by PID."""

    def __init__(self, tmp: Path, bird: str, birdc: str, exabgp: str, env: dict[str, str]) -> None:
        self.tmp, self.bird_bin, self.birdc_bin, self.exabgp_bin, self.env = (
            tmp,
            bird,
            birdc,
            exabgp,
            env,
        )
        self.processes: list[subprocess.Popen] = []
        self.control = tmp / "bird.ctl"

    def start_bird(self, config: str) -> None:
        conf = self.tmp / "bird.conf"
        conf.write_text(config)
        log = (self.tmp / "bird.log").open("w")
        # -f keeps BIRD a child of the test, whose PID the teardown ends
        command = [
            self.bird_bin,
            "-f",
            "-s",
            str(self.control),
            "-P",
            str(self.tmp / "bird.pid"),
            "-c",
            str(conf),
        ]
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        wait_for(self.control.exists, "BIRD control socket", self.logs)

    def start_exabgp(
        self, name: str, config_for: Callable[[tuple[str, ...]], str], cidr: str
    ) -> Path:
        """Start ExaBGP with an API process announcing cidr; return the log of what it receives."""
        received = self.tmp / f"{name}.received"
        script = self.tmp / f"{name}-api.py"
        script.write_text(
            f"#!{sys.executable}\n" + API_PROCESS.format(cidr=cidr, log=str(received))
        )
        script.chmod(0o755)
        conf = self.tmp / f"{name}.conf"
        conf.write_text(config_for((str(script),)))
        log = (self.tmp / f"{name}.log").open("w")
        self.processes.append(
            subprocess.Popen(
                [self.exabgp_bin, str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.tmp,
            )
        )
        return received

    def birdc(self, *command: str) -> str:
        result = subprocess.run(
            [self.birdc_bin, "-s", str(self.control), *command],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.stdout + result.stderr

    def logs(self) -> str:
        parts = [f"--- {path.name}\n{path.read_text()}" for path in sorted(self.tmp.glob("*.log"))]
        if self.control.exists():
            parts.append("--- birdc show protocols all\n" + self.birdc("show", "protocols", "all"))
        return "\n".join(parts)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def speakers(tmp_path, bird_bin, birdc_bin, exabgp_bin, exabgp_env) -> Iterator[Speakers]:
    running = Speakers(tmp_path, bird_bin, birdc_bin, exabgp_bin, exabgp_env)
    try:
        yield running
    finally:
        running.stop()


def announced(received: Path, cidr: str, next_hop: str) -> list[dict]:
    """The updates in ExaBGP's log announcing cidr through next_hop."""
    if not received.exists():
        return []
    updates = []
    for line in received.read_text().splitlines():
        if not line.startswith("{"):  # ExaBGP's acknowledgements: "done", "error"
            continue
        message = json.loads(line)
        update = message.get("neighbor", {}).get("message", {}).get("update", {})
        nlri = update.get("announce", {}).get("ipv4 unicast", {}).get(next_hop, [])
        if any(entry.get("nlri") == cidr for entry in nlri):
            updates.append(update)
    return updates


@pytest.mark.parametrize(
    ("bird_address", "exabgp_address"),
    [("127.0.0.1", "127.0.0.2"), ("127.0.0.3", "127.0.0.2")],
    ids=["bird-waits", "exabgp-waits"],
)
def test_bird_and_exabgp_exchange_pod_routes(
    bird_address, exabgp_address, speakers, make_node, plan
):
    nodes = [
        make_node(
            "node-a", bird_address, port=free_port(bird_address), pod_cidrs=["10.244.1.0/24"]
        ),
        make_node(
            "node-b", exabgp_address, port=free_port(exabgp_address), pod_cidrs=["10.244.2.0/24"]
        ),
    ]
    topology = plan(nodes)
    bird_waits = topology.node("node-a").peers[0].passive
    assert bird_waits == (ip_address(bird_address) < ip_address(exabgp_address))

    def start_exabgp() -> Path:
        received = speakers.start_exabgp(
            "node-b", lambda api: render_exabgp(topology, "node-b", process=api), "10.244.2.0/24"
        )
        wait_for(
            lambda: listening(exabgp_address, nodes[1].port),
            "ExaBGP listening socket",
            speakers.logs,
        )
        return received

    # the end that waits starts first, so the end that connects finds it listening
    if bird_waits:
        speakers.start_bird(render_bird(topology, "node-a"))
        received = start_exabgp()
    else:
        received = start_exabgp()
        speakers.start_bird(render_bird(topology, "node-a"))

    wait_for(
        lambda: "Established" in speakers.birdc("show", "protocols", "mesh_node_b_v4"),
        "session",
        speakers.logs,
    )
    wait_for(
        lambda: "10.244.2.0/24" in speakers.birdc("show", "route", "protocol", "mesh_node_b_v4"),
        "route from ExaBGP in BIRD",
        speakers.logs,
    )
    # and the other way: BIRD exports node-a's CIDR, with itself as the next hop
    wait_for(
        lambda: bool(announced(received, "10.244.1.0/24", bird_address)),
        "route from BIRD in ExaBGP",
        speakers.logs,
    )
    assert "protocol kernel" not in (speakers.tmp / "bird.conf").read_text()


def test_bird_reflects_between_exabgp_clients(speakers, make_node, make_settings, plan):
    addresses = {"node-a": "127.0.0.1", "node-b": "127.0.0.2", "node-c": "127.0.0.3"}
    nodes = [
        make_node(name, address, port=free_port(address), pod_cidrs=[f"10.244.{i + 1}.0/24"])
        for i, (name, address) in enumerate(addresses.items())
    ]
    topology = plan(nodes, make_settings("route-reflector", names=["node-a"]))
    speakers.start_bird(
        render_bird(topology, "node-a")
    )  # the reflector has the lowest address: it waits
    received = {
        name: speakers.start_exabgp(
            name, lambda api, name=name: render_exabgp(topology, name, process=api), cidr
        )
        for name, cidr in (("node-b", "10.244.2.0/24"), ("node-c", "10.244.3.0/24"))
    }

    for name in ("client_node_b_v4", "client_node_c_v4"):
        wait_for(
            lambda name=name: "Established" in speakers.birdc("show", "protocols", name),
            f"session {name}",
            speakers.logs,
        )
    # node-c learns node-b's CIDR through the reflector, next hop unchanged, marked as reflected
    wait_for(
        lambda: bool(announced(received["node-c"], "10.244.2.0/24", "127.0.0.2")),
        "reflected route",
        speakers.logs,
    )
    (update, *_) = announced(received["node-c"], "10.244.2.0/24", "127.0.0.2")
    assert update["attribute"]["originator-id"] == "127.0.0.2"
    assert update["attribute"]["cluster-list"] == ["127.0.0.1"]
    wait_for(
        lambda: bool(announced(received["node-b"], "10.244.3.0/24", "127.0.0.3")),
        "reflected route",
        speakers.logs,
    )
    wait_for(
        lambda: bool(announced(received["node-b"], "10.244.1.0/24", "127.0.0.1")),
        "reflector's own route",
        speakers.logs,
    )
