"""Resident memory of `netplan speaker` (supervisor, ExaBGP and agent) with N announced
routes, and the time they take to reach BIRD. A benchmark, not a test: it measures.

    python tests/bench/speaker_memory.py [--routes 10000]

Runs on 127.0.0.1/127.0.0.2 in a temporary directory, every process ended by PID.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speaker"))
from speaker_harness import (  # noqa: E402
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
    wait_for,
    write_spec,
)
from test_speaker_scale import fill_store, synthetic_leases  # noqa: E402


def measure(routes: int, tmp: Path) -> None:
    processes = Processes(tmp)
    try:
        bird = Bird(processes, "bird", require("bird", "bird2"), require("birdc", "bird2"))
        a = Node("node-a", "127.0.0.2")
        port = free_port("127.0.0.1")
        spec = write_spec(tmp / "a.yaml", [a], peers=[("127.0.0.1", port)])
        fill_store(str(tmp / "netplan.db"), synthetic_leases(routes))
        bird.start(bird_peer_config("127.0.0.1", port, [a]))
        speaker = Speaker(processes, spec, "node-a", str(tmp / "netplan.db"))
        idle = _tree(speaker.start())  # before any route: the processes' own footprint
        start = time.monotonic()
        wait_for(lambda: bird.count() == routes, f"{routes} routes at BIRD",
                 processes.logs, timeout=300, interval=0.2)
        took = time.monotonic() - start
        time.sleep(2)  # let the agent's and ExaBGP's tables settle
        loaded = _tree(speaker)
        print(f"{routes} routes at BIRD {took:.1f} s after the speaker started")
        for role in loaded:
            print(f"  {role:<10} {loaded[role] / 1024:7.1f} MiB "
                  f"(at start {idle.get(role, 0) / 1024:.1f} MiB)")
        print(f"  {'total':<10} {sum(loaded.values()) / 1024:7.1f} MiB "
              f"(at start {sum(idle.values()) / 1024:.1f} MiB)")
    finally:
        processes.stop_all()


def _tree(speaker: Speaker) -> dict[str, int]:
    """RSS (KiB) of the supervisor, ExaBGP and the agent, once all three run."""
    assert speaker.proc is not None
    wait_for(lambda: len(descendants(speaker.proc.pid)) >= 2, "ExaBGP and its agent")
    sizes = {"supervisor": rss_kib(speaker.proc.pid)}
    for pid in descendants(speaker.proc.pid):
        sizes["agent" if "bgp.agent" in cmdline(pid) else "exabgp"] = rss_kib(pid)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netplan-bench-") as tmp:
        measure(args.routes, Path(tmp))


if __name__ == "__main__":
    main()
