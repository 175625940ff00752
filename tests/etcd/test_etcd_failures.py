"""An etcd store under failure: killed allocators, lost members, unreachable endpoints."""

from __future__ import annotations

import json
import os
import signal
import time

from etcd_server import free_ports
from etcd_support import assert_no_overlap, assert_nodes_whole, stored_leases, write_spec
from netplan_cli import netplan, start


def lease_count(etcd, cluster: str, member=None) -> int:
    with etcd.client(member) as client:
        return client.get_prefix_response(f"/netplan/{cluster}/leases/", count_only=True).count


def wait_for_leases(etcd, proc, cluster: str, at_least: int, member=None) -> int:
    """Poll until the running allocator has written at_least leases; fail if it ends first."""
    while True:
        count = lease_count(etcd, cluster, member)
        if count >= at_least:
            return count
        assert proc.poll() is None, f"the run ended before {at_least} leases: {proc.stderr.read()}"
        time.sleep(0.01)


def test_a_5000_node_run_killed_three_times_stays_consistent_and_completes(etcd, tmp_path):
    nodes = [f"node-{i:04d}" for i in range(5000)]
    spec = write_spec(tmp_path / "big.yaml", "big", nodes, dual_stack=True)
    for at_least in (1500, 4000, 6500):  # of 10,000 leases: two per node
        proc = start("allocate", "-f", spec, "--store", etcd.url)
        seen = wait_for_leases(etcd, proc, "big", at_least)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        leases = stored_leases(etcd, "big")
        assert len(leases) >= seen and len(leases) < 10000, len(leases)
        assert_nodes_whole(leases, pools=2)
        assert_no_overlap(leases)
        check = netplan("check", "--store", etcd.url)
        assert check.returncode == 0, check.stdout + check.stderr
    began = time.monotonic()
    done = netplan("allocate", "-f", spec, "--store", etcd.url, "-o", "json")
    print(f"\nrerun completing a 5,000-node dual-stack plan: {time.monotonic() - began:.1f}s")
    assert done.returncode == 0, done.stderr
    leases = stored_leases(etcd, "big")
    assert len(leases) == 10000
    assert sorted(assert_nodes_whole(leases, pools=2)) == nodes
    assert_no_overlap(leases)
    assert netplan("check", "--store", etcd.url).returncode == 0


def test_a_run_completes_when_one_of_three_members_dies_under_it(etcd3, tmp_path):
    nodes = [f"node-{i:04d}" for i in range(3000)]
    spec = write_spec(tmp_path / "big.yaml", "big", nodes, dual_stack=True)
    first, survivor = etcd3.members[0], etcd3.members[1]
    # The first endpoint is the one the run talks to: it dies in the middle of the run.
    proc = start("allocate", "-f", spec, "--store", etcd3.url)
    wait_for_leases(etcd3, proc, "big", 1500, member=survivor)
    etcd3.kill(first)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert lease_count(etcd3, "big", survivor) == 6000
    leases = stored_leases_of(etcd3, survivor)
    assert sorted(assert_nodes_whole(leases, pools=2)) == nodes
    assert_no_overlap(leases)


def test_a_run_that_loses_quorum_fails_cleanly_and_the_next_completes(etcd3, tmp_path):
    nodes = [f"node-{i:04d}" for i in range(3000)]
    spec = write_spec(tmp_path / "big.yaml", "big", nodes, dual_stack=True)
    m0, m1, m2 = etcd3.members
    proc = start("allocate", "-f", spec, "--store", etcd3.url)
    wait_for_leases(etcd3, proc, "big", 1500, member=m2)
    etcd3.kill(m1)
    etcd3.kill(m0)
    lost = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert time.monotonic() - lost < 15
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: etcd "), err
    # Quorum back: whatever landed is whole nodes, and the next run completes the plan.
    for m in (m0, m1):
        etcd3.start_member(m)
    etcd3.wait_healthy()
    leases = stored_leases_of(etcd3, m2)
    assert 1500 <= len(leases) < 6000
    assert_nodes_whole(leases, pools=2)
    assert_no_overlap(leases)
    assert netplan("check", "--store", etcd3.url).returncode == 0
    done = netplan("allocate", "-f", spec, "--store", etcd3.url)
    assert done.returncode == 0, done.stderr
    assert sorted(assert_nodes_whole(stored_leases_of(etcd3, m2), pools=2)) == nodes


def stored_leases_of(etcd, member) -> list[dict]:
    with etcd.client(member) as client:
        return [json.loads(v) for v, _ in client.get_prefix("/netplan/big/leases/")]


def test_an_unreachable_store_is_exit_3_with_one_error_line_within_seconds(tmp_path):
    (port,) = free_ports(1)  # nothing listens there
    spec = write_spec(tmp_path / "s.yaml", "demo", ["a"])
    # The default timeout (5 s), and a shorter one.
    for args in (("show",), ("--store-timeout", "1", "allocate", "-f", spec)):
        began = time.monotonic()
        r = netplan(*args, "--store", f"etcd://127.0.0.1:{port}")
        elapsed = time.monotonic() - began
        assert r.returncode == 3, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: etcd 127.0.0.1:"), r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert elapsed < 10, (args, elapsed)
