"""--install-routes, tested only inside a network namespace this test creates (DESIGN 7).

In the namespace: loopback for the BGP session, and a veth pair whose end `va` holds
192.0.2.1/24, so that 192.0.2.2 is a next hop the kernel accepts (a loopback address is
not: it is local). BIRD announces 10.244.77.0/24 via 192.0.2.2 (`next hop keep`), and
10.244.0.0/24, node-a's own CIDR, which the speaker must never route elsewhere. The
machine's own routing table is only read, to show it untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from speaker_harness import Bird, Node, Processes, Speaker, netplan, wait_for, write_spec

from bgp.kernel import PROTOCOL

LEARNED = "10.244.77.0/24 via 192.0.2.2 dev va"
OWN = "10.244.0.0/24"  # node-a's lease

BIRD_CONFIG = """\
router id 127.0.0.1;
protocol device {{
}}
protocol static others {{
  ipv4;
  route 10.244.77.0/24 via 192.0.2.2;
  route 10.244.0.0/24 via 192.0.2.3;
}}
protocol bgp node_a {{
  local 127.0.0.1 port {bird_port} as 64512;
  neighbor 127.0.0.2 port {node_port} as 64512;
  strict bind on;
  connect retry time 1;
  ipv4 {{ import all; export all; next hop keep; }};
}}
"""


def ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"np-speaker-{os.getpid()}"
    try:
        ip("netns", "add", name)
    except RuntimeError as exc:
        pytest.fail(f"network namespaces are not permitted here ({exc}); --install-routes "
                    "is tested only inside one, never on the machine's own table",
                    pytrace=False)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        ip("-n", name, "addr", "add", "192.0.2.1/24", "dev", "va")
        ip("-n", name, "link", "set", "va", "up")
        ip("-n", name, "link", "set", "vb", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=30, check=False)


def installed(netns: str) -> list[str]:
    return [line.strip() for line in
            ip("-n", netns, "route", "show", "proto", str(PROTOCOL)).splitlines()]


def test_learned_routes_installed_in_the_namespace(netns, processes: Processes,
                                                   bird_bin, birdc_bin):
    host_before = ip("route", "show", "table", "all")
    a = Node("node-a", "127.0.0.2", port=17902)  # ports of the namespace: all free there
    spec = write_spec(processes.tmp / "a.yaml", [a], peers=[("127.0.0.1", 17901)])
    store = str(processes.tmp / "netplan.db")
    netplan("allocate", "-f", str(spec), "--store", store)
    bird = Bird(processes, "bird", bird_bin, birdc_bin, netns=netns)
    bird.start(BIRD_CONFIG.format(bird_port=17901, node_port=a.port))
    speaker = Speaker(processes, spec, "node-a", store, "--install-routes", netns=netns)
    speaker.start()

    def diagnose() -> str:
        return (f"namespace: {ip('-n', netns, 'route')}\nstatus: {speaker.status()}\n"
                f"{processes.logs()}")

    wait_for(lambda: installed(netns) == [LEARNED], "the learned route installed", diagnose)
    # the own CIDR was learned (BIRD has a route for it) but is never installed
    assert (OWN, "192.0.2.3") in speaker.learned(), diagnose()
    assert speaker.metrics()["netplan_speaker_routes_installed"] == 1

    # ExaBGP killed: the route stays while the next agent takes over, and is adopted
    os.kill(speaker.exabgp_pid(), signal.SIGKILL)
    for _ in range(20):
        assert installed(netns) == [LEARNED], diagnose()
        time.sleep(0.05)
    wait_for(lambda: "adopted 1 routes" in speaker.proc.log.read_text(), "adoption", diagnose)
    wait_for(lambda: ("10.244.77.0/24", "192.0.2.2") in speaker.learned(),
             "the route learned again", diagnose)
    assert installed(netns) == [LEARNED]

    # BIRD withdraws it: it leaves the table
    bird.birdc("disable", "others")
    wait_for(lambda: installed(netns) == [], "the withdrawn route removed", diagnose)
    bird.birdc("enable", "others")
    wait_for(lambda: installed(netns) == [LEARNED], "the route installed again", diagnose)

    # an orderly stop removes what the speaker installed
    assert speaker.stop() == 0
    assert installed(netns) == []
    assert ip("route", "show", "table", "all") == host_before


DUAL_STACK_BIRD = """\
router id 127.0.0.1;
protocol device {
}
protocol bgp v4 {
  local 127.0.0.1 port 17901 as 64512;
  neighbor 127.0.0.2 port 17902 as 64512;
  connect retry time 1;
  ipv4 { import all; export none; };
}
protocol bgp v6 {
  local fd00::1 port 17901 as 64512;
  neighbor fd00::2 port 17902 as 64512;
  connect retry time 1;
  ipv6 { import all; export none; };
}
"""


def test_dual_stack_node_announces_each_family_on_its_sessions(netns, processes: Processes,
                                                               bird_bin, birdc_bin):
    """IPv6 needs addresses of its own: the namespace's va carries fd00::1 and fd00::2."""
    for address in ("fd00::1/64", "fd00::2/64"):
        ip("-n", netns, "addr", "add", address, "dev", "va", "nodad")
    spec = processes.tmp / "dual.yaml"
    spec.write_text(
        "cluster: demo\n"
        "pools:\n"
        "  - {name: pods-v4, cidr: 10.244.0.0/16, nodeMaskSize: 24}\n"
        "  - {name: pods-v6, cidr: 'fd00:10:244::/56', nodeMaskSize: 64}\n"
        "nodes:\n"
        "  - {name: node-a, addresses: [127.0.0.2, 'fd00::2'], bgpPort: 17902}\n"
        "bgp:\n"
        "  topology: none\n"
        "  peers:\n"
        "    - {address: 127.0.0.1, asNumber: 64512, port: 17901}\n"
        "    - {address: 'fd00::1', asNumber: 64512, port: 17901}\n"
    )
    store = str(processes.tmp / "netplan.db")
    netplan("allocate", "-f", str(spec), "--store", store)
    bird = Bird(processes, "bird", bird_bin, birdc_bin, netns=netns)
    bird.start(DUAL_STACK_BIRD)
    speaker = Speaker(processes, spec, "node-a", store, netns=netns).start()
    wanted = {"10.244.0.0/24": ["127.0.0.2"], "fd00:10:244::/64": ["fd00::2"]}
    wait_for(lambda: bird.routes() == wanted, "one route per family at BIRD",
             lambda: f"{bird.birdc('show', 'route', 'all')}\n{processes.logs()}")
    assert "v4" in bird.birdc("show", "route", "10.244.0.0/24", "all")
    assert "v6" in bird.birdc("show", "route", "fd00:10:244::/64", "all")
    # each line named its family's neighbor: ExaBGP never saw a prefix of a foreign family
    assert "is not configured on neighbor" not in speaker.proc.log.read_text()
