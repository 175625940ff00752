"""netplan's benchmarks, each side by side with an anchor measured in the same run.

    python tests/bench/run.py [--quick] [--only SCENARIO]

Prints a table (scenario, netplan, anchor, ratio, goal, met) and writes the same to
tests/bench/results.json. Figures are medians of at least 5 runs; ratios, not absolute
times, are what the goals judge, so a noisy machine still gives a fair answer.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from anchors import bitmap_allocate, sweep_overlaps  # noqa: E402
from speaker_scenarios import scenario_announce, scenario_latency  # noqa: E402
from store_scenarios import (  # noqa: E402
    scenario_etcd_allocate,
    scenario_etcd_contention,
    scenario_store_size,
)

from ipam.conflicts import AVOID, POOL, Claim, conflicts  # noqa: E402
from ipam.net import Cidr  # noqa: E402
from ipam.state import Snapshot  # noqa: E402
from planner.plan import build_plan  # noqa: E402
from planner.spec import parse_spec  # noqa: E402


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(scenario, unit, netplan, anchor, goal, met):
    ratio = netplan / anchor if anchor else None
    return {"scenario": scenario, "unit": unit, "netplan": round(netplan, 6),
            "anchor": None if anchor is None else round(anchor, 6),
            "ratio": None if ratio is None else round(ratio, 3), "goal": goal, "met": met}


def plan_spec(nodes: int, reserved: int) -> dict:
    return {
        "cluster": "bench",
        "pools": [{"name": "pods-v4", "cidr": "10.0.0.0/8", "nodeMaskSize": 24},
                  {"name": "pods-v6", "cidr": "fd00:10::/48", "nodeMaskSize": 64}],
        "services": {"cidr": "172.16.0.0/12"},
        # Reserved /24s high in the pool, clear of the nodes' lowest CIDRs.
        "reserved": [f"10.{255 - i // 256}.{i % 256}.0/24" for i in range(reserved)],
        "nodes": [{"name": f"node-{i:05d}",
                   "addresses": [f"192.168.{i // 250}.{i % 250 + 1}", f"fd00:1::{i + 1:x}"]}
                  for i in range(nodes)],
    }


def scenario_plan(quick: bool) -> list[dict]:
    nodes, reserved, runs = (1000, 200, 5) if quick else (5000, 1000, 7)
    spec = parse_spec(plan_spec(nodes, reserved))
    empty = Snapshot()
    netplan = median_time(lambda: build_plan(spec, empty), runs)
    reserved_v4 = plan_spec(0, reserved)["reserved"]

    def anchor():
        bitmap_allocate("10.0.0.0/8", 24, reserved_v4, nodes)
        bitmap_allocate("fd00:10::/48", 64, [], nodes)

    base = median_time(anchor, runs)
    ratio = netplan / base
    rows = [row(f"1. plan {nodes} nodes v4+v6, {reserved} reserved", "s", netplan, base,
                "<= 2x anchor and < 0.1 s", ratio <= 2 and netplan < 0.1)]

    exhaust_nodes = 65536
    ex_spec = parse_spec({
        "cluster": "bench",
        "pools": [{"name": "p", "cidr": "10.0.0.0/8", "nodeMaskSize": 24}],
        "services": {"cidr": "172.16.0.0/12"},
        "nodes": [{"name": f"n{i:05d}", "address": f"fd00:2::{i // 60000:x}:{i % 60000 + 1:x}",
                   "routerId": "192.0.2.1"} for i in range(exhaust_nodes)],
    }) if not quick else None
    if ex_spec is not None:
        ex = median_time(lambda: build_plan(ex_spec, empty), 5)
        ex_anchor = median_time(lambda: bitmap_allocate("10.0.0.0/8", 24, [], exhaust_nodes), 5)
        rows.append(row("1b. exhaust 10.0.0.0/8 into 65,536 /24s", "s", ex, ex_anchor,
                        "< 1 s", ex < 1.0))
    tracemalloc.start()
    build_plan(spec, empty)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows.append(row(f"1c. plan {nodes} nodes: peak memory", "MB", peak / 2**20, None,
                    "< 60 MB", peak / 2**20 < 60))
    return rows


def scenario_conflicts(quick: bool) -> list[dict]:
    many, few, runs = (2000, 200, 5) if quick else (10000, 1000, 7)
    # 10,000 /24s against 1,000 /20s, spread so that some overlap.
    ranges = [Cidr(4, (10 << 24) + i * 997 * 256 % (1 << 24) // 256 * 256, 24)
              for i in range(many)]
    against = [Cidr(4, (10 << 24) + (i * 7919 * 4096) % (1 << 24), 20) for i in range(few)]
    # Pools against avoid ranges, through the rules the planner applies.
    claims = [Claim(POOL, f"r{i}", c) for i, c in enumerate(ranges)] + [
        Claim(AVOID, f"a{i}", c) for i, c in enumerate(against)]
    netplan = median_time(lambda: conflicts(claims), runs)
    ints = [(c.first, c.last) for c in ranges]
    ints_against = [(c.first, c.last) for c in against]
    base = median_time(lambda: sweep_overlaps(ints, ints_against), runs)
    return [row(f"2. conflict check {many} ranges against {few}", "s", netplan, base,
                "<= 1.5x anchor", netplan / base <= 1.5)]


SCENARIOS = {"plan": scenario_plan, "conflicts": scenario_conflicts,
             "etcd-allocate": scenario_etcd_allocate,  # 3
             "etcd-contention": scenario_etcd_contention,  # 4
             "announce": scenario_announce,  # 5
             "lease-to-route": scenario_latency,  # 6
             "store-size": scenario_store_size}  # 7


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    rows = []
    for name, scenario in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        rows.extend(scenario(args.quick))
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {sys.platform}")
    print(f"{'scenario':<48} {'netplan':>10} {'anchor':>10} {'ratio':>7}  {'goal':<26} met")
    for r in rows:
        anchor = "-" if r["anchor"] is None else f"{r['anchor']:.4f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['scenario']:<48} {r['netplan']:>10.4f} {anchor:>10} {ratio:>7}  "
              f"{r['goal']:<26} {'yes' if r['met'] else 'NO'}")
    (HERE / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
