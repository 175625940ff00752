"""Benchmarks 3, 4 and 7: netplan's lease stores on a real local etcd, and on SQLite.

3. Cold allocation of N node leases into etcd: EtcdStore.update with build_plan of an N-node
   spec (read, plan, CAS batches), a fresh key prefix each run. Anchor: a raw loop of
   128-operation transactions with the same client library (pyetcd), each key guarded by a
   `version == 0` compare, writing N lease-like keys (the same key layout and JSON values).
4. Contention: 8 allocator processes on one etcd, each allocating its own 500 nodes into one
   cluster with keep_removed (`allocate --keep-removed`'s code path), all released at once.
   Anchor: 8 raw processes that allocate the same number of keys in 128-operation
   transactions through one shared counter key: each transaction compares the counter's mod
   revision, puts 127 leases numbered from the counter and the new counter value; a lost
   compare returns the counter (the transaction's failure branch reads it) and the writer
   tries again at once. That is the simplest allocator that gives netplan's guarantee (no
   CIDR handed out twice) through the same serialisation (one key every write compares),
   so the ratio is the price of netplan's own work: after a lost race, the writers' lock
   taken and a full re-read and re-plan under it; batches kept whole per node. Create-only
   compares on disjoint node keys would never conflict, but would not stop two writers from
   picking one CIDR either. Reported beside it (4c, 4d), against the same anchor: the same
   eight writers, each a cluster of its own (its own pool and services range) in one store,
   as when several clusters are allocated at once; their claims of ranges race on the
   store's global guard (ipam/store/etcd.py), their leases do not.
7. Store size: 65,536 leases (10.0.0.0/8 into /24, exhaustion) in SQLite and in etcd: bytes
   per lease (the SQLite file; etcd's db after compaction and defragmentation, from the
   endpoint status) and the time of the `netplan show` process, `-o json` and the default
   table. Anchor of the show time: the stock client dumping every lease (`sqlite3 DB
   'select ... from leases'`, `etcdctl get --prefix .../leases/`): the same job (read every
   lease, print it), which a count-only query would not be. A cluster record kept in one key
   (every node's name and addresses) would outgrow etcd's default request limit (1.5 MiB) at
   about 23,500 nodes; netplan keeps the nodes in pages of about 64: row 7d says whether the
   allocation went through on a default etcd (and the size that one key would have had); if not, the
   rest is measured on an etcd started with --max-request-bytes 8 MiB.

Every scenario starts its own etcd (tests/etcd/etcd_server.py: Debian's `etcd` on free
loopback ports, a fresh data directory in a temporary directory) and ends it by PID, also on
error. Every run's leases are read back and checked with the standard library's `ipaddress`.

Run as a script, this file is a worker process of scenario 4 (see `worker`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for extra in (HERE, ROOT / "tests", ROOT / "tests" / "etcd", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

CLUSTER = "bench"
POOL = "pods-v4"
V4_POOL = "10.0.0.0/8"
TXN_OPS = 128  # etcd's default --max-txn-ops, the batch size of both netplan and the anchors
PAGE = 2000  # keys per range read of the oracle


def _row(*args):
    from run import row  # the runner's row: one table and JSON format for every scenario

    return row(*args)


# --- specs, keys and values -----------------------------------------------------------------


def node_address(index: int) -> str:
    """A node address clear of the pool (10.0.0.0/8) and the services range."""
    return str(ipaddress.ip_address("172.16.0.1") + index)


def spec_dict(names: list[str], pool: str = V4_POOL, offset: int = 0) -> dict:
    return {
        "cluster": CLUSTER,
        "pools": [{"name": POOL, "cidr": pool, "nodeMaskSize": 24}],
        "services": {"cidr": "192.168.0.0/16"},
        "bgp": {"topology": "none"},
        "nodes": [{"name": n, "address": node_address(offset + i)} for i, n in enumerate(names)],
    }


def lease_key(prefix: str, node: str, cluster: str = CLUSTER) -> str:
    return f"{prefix}/{cluster}/leases/{node}/{POOL}"


def lease_value(node: str, index: int) -> str:
    """A lease-like value: what netplan stores, the index-th /24 of 10.0.0.0/8."""
    return json.dumps({"cidr": f"10.{index >> 8}.{index & 255}.0/24", "cluster": CLUSTER,
                       "node": node, "pool": POOL}, sort_keys=True)


# --- etcd -------------------------------------------------------------------------------------


@contextlib.contextmanager
def local_etcd(*extra_args: str) -> Iterator:
    """A fresh one-member etcd on loopback in a temporary directory, ended by PID."""
    from etcd_server import EtcdCluster

    class Cluster(EtcdCluster):
        def _command(self, m, state):
            return super()._command(m, state) + list(extra_args)

    base = Path(tempfile.mkdtemp(prefix="netplan-bench-etcd-"))
    cluster = Cluster(base / "etcd")
    try:
        cluster.start()  # stops what it started if the start fails
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def read_prefix(client, prefix: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) under prefix at one revision, in pages."""
    from pyetcd.utils import prefix_range_end

    start, end = prefix.encode(), prefix_range_end(prefix.encode())
    out, revision = [], None
    while True:
        resp = client.get_range_response(start, end, limit=PAGE, revision=revision)
        revision = revision or resp.header.revision
        out.extend((kv.key, kv.value) for kv in resp.kvs)
        if not resp.more:
            return out
        start = resp.kvs[-1].key + b"\0"


def overlaps(cidrs: list[str]) -> int:
    """The ipaddress oracle: how many of these CIDRs overlap (or equal) another one."""
    nets = sorted(ipaddress.ip_network(c) for c in cidrs)
    bad = 0
    reach = None  # the highest address covered so far
    for net in nets:
        if reach is not None and net.network_address <= reach:
            bad += 1
        reach = net.broadcast_address if reach is None else max(reach, net.broadcast_address)
    return bad


def held_cidrs(client, prefix: str, nodes: list[str], cluster: str = CLUSTER) -> list[str]:
    """Read a cluster's leases back: every node exactly once, keyed right; their CIDRs."""
    rows = [(key.decode(), json.loads(value))
            for key, value in read_prefix(client, f"{prefix}/{cluster}/leases/")]
    for key, lease in rows:
        if key != lease_key(prefix, lease["node"], cluster) or lease["pool"] != POOL:
            raise RuntimeError(f"bench: lease key {key} holds {lease}")
    held = sorted(lease["node"] for _, lease in rows)
    if held != sorted(nodes):
        raise RuntimeError(f"bench: {prefix}: {len(held)} leases for {len(nodes)} nodes")
    return [lease["cidr"] for _, lease in rows]


def check_leases(client, prefix: str, nodes: list[str]) -> int:
    """The duplicates among a run's leases (held_cidrs checks the rest)."""
    return overlaps(held_cidrs(client, prefix, nodes))


# --- 3. cold allocation ----------------------------------------------------------------------


def netplan_allocate(url: str, prefix: str, spec, keep_removed: bool = False):
    """An EtcdStore connected (one read) and the allocation to time; `allocate`'s path."""
    from ipam.store import StoreOptions, open_store
    from planner.plan import build_plan

    store = open_store(url, StoreOptions(etcd_prefix=prefix))
    store.snapshot()  # connect: both sides are timed on an open channel

    def step(snapshot):
        plan = build_plan(spec, snapshot, keep_removed)
        return plan.write(), plan

    return store, lambda: store.update(step, cluster=spec.cluster)


def raw_create_only(client, prefix: str, nodes: list[str]) -> None:
    """The anchor of 3: 128 creates a transaction, each compared with `version == 0`."""
    t = client.transactions
    for first in range(0, len(nodes), TXN_OPS):
        chunk = range(first, min(first + TXN_OPS, len(nodes)))
        keys = [lease_key(prefix, nodes[i]) for i in chunk]
        ok, _ = client.transaction(
            compare=[t.version(k) == 0 for k in keys],
            success=[t.put(k, lease_value(nodes[i], i)) for k, i in zip(keys, chunk)],
            failure=[])
        if not ok:
            raise RuntimeError(f"anchor: keys under {prefix} exist already")


def scenario_etcd_allocate(quick: bool) -> list[dict]:
    from planner.spec import parse_spec

    count, runs = (1000, 5) if quick else (5000, 7)
    nodes = [f"node-{i:05d}" for i in range(count)]
    spec = parse_spec(spec_dict(nodes))
    mine, theirs, duplicates = [], [], 0
    with local_etcd() as etcd, etcd.client() as client:
        client.get("/warm-up")
        # Alternating runs: both sides see the same etcd (its db grows run by run).
        for run in range(runs):
            prefix = f"/bench3-netplan-{run}"
            store, allocate = netplan_allocate(etcd.url, prefix, spec)
            with store:
                start = time.perf_counter()
                allocate()
                mine.append(time.perf_counter() - start)
            duplicates += check_leases(client, prefix, nodes)

            prefix = f"/bench3-raw-{run}"
            start = time.perf_counter()
            raw_create_only(client, prefix, nodes)
            theirs.append(time.perf_counter() - start)
            duplicates += check_leases(client, prefix, nodes)
    ours, base = count / statistics.median(mine), count / statistics.median(theirs)
    return [_row(f"3. etcd cold allocate {count} leases, dup {duplicates}", "keys/s", ours,
                 base, ">= 0.7x anchor, 0 dup", ours >= 0.7 * base and duplicates == 0)]


# --- 4. contention ---------------------------------------------------------------------------


def worker(argv: list[str]) -> int:
    """One allocator of scenario 4: `worker netplan URL PREFIX SPEC` or
    `worker raw URL PREFIX FIRST COUNT NAME...` (FIRST: its nodes' offset, unused by netplan).

    Connects, prints `ready`, waits for a line on stdin, allocates, prints one JSON line:
    {"end": time.monotonic() when done, "lost": compare-and-swap races lost}.
    """
    kind, url, prefix = argv[:3]
    if kind == "netplan":
        from planner.spec import load_spec_file

        spec = load_spec_file(argv[3])
        store, allocate = netplan_allocate(url, prefix, spec, keep_removed=True)
        print("ready", flush=True)
        sys.stdin.readline()
        with store:
            allocate()
        lost = store.lost_races
    else:
        import pyetcd

        host, port = url.removeprefix("etcd://").rsplit(":", 1)
        nodes = argv[3:]
        client = pyetcd.client(host, int(port), timeout=30)
        client.get("/warm-up")
        print("ready", flush=True)
        sys.stdin.readline()
        lost = raw_counter_allocate(client, prefix, nodes)
        client.close()
    print(json.dumps({"end": time.monotonic(), "lost": lost}), flush=True)
    return 0


def raw_counter_allocate(client, prefix: str, nodes: list[str]) -> int:
    """The anchor of 4: leases numbered from one shared counter key, compare-and-swapped.

    127 lease puts and the counter's put a transaction, one compare (the counter's mod
    revision); a lost compare returns the counter's current value. Returns races lost.
    """
    t = client.transactions
    counter = f"{prefix}/{CLUSTER}/next"
    value, meta = client.get(counter)
    at, seen = (int(value), meta.mod_revision) if value is not None else (0, 0)
    lost = 0
    per = TXN_OPS - 1
    for first in range(0, len(nodes), per):
        chunk = nodes[first:first + per]
        while True:
            ops = [t.put(lease_key(prefix, n), lease_value(n, at + i)) for i, n in enumerate(chunk)]
            ops.append(t.put(counter, str(at + len(chunk))))
            ok, responses = client.transaction(compare=[t.mod(counter) == seen], success=ops,
                                               failure=[t.get(counter)])
            if ok:
                at, seen = at + len(chunk), responses[-1].response_put.header.revision
                break
            lost += 1
            ((value, meta),) = responses[0]
            at, seen = int(value), meta.mod_revision
    return lost


def run_workers(commands: list[list[str]]) -> tuple[float, int]:
    """Start the workers, release them at once: (seconds until the last is done, races lost)."""
    procs = []
    try:
        for args in commands:
            procs.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "worker", *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True))
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"bench worker failed to start: {p.communicate()[1][-2000:]}")
        start = time.monotonic()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        ends, lost = [], 0
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"bench worker exited with {p.returncode}: {err[-2000:]}")
            result = json.loads(out.strip().splitlines()[-1])
            ends.append(result["end"])
            lost += result["lost"]
        return max(ends) - start, lost
    finally:
        for p in procs:  # only on error: the workers outlive nothing
            if p.poll() is None:
                p.kill()
                p.wait()


def scenario_etcd_contention(quick: bool) -> list[dict]:
    writers, per, runs = (8, 100, 5) if quick else (8, 500, 5)
    total = writers * per
    names = [[f"w{w}-node-{i:04d}" for i in range(per)] for w in range(writers)]
    every = [n for group in names for n in group]
    mine, theirs, lost_mine, lost_theirs, duplicates = [], [], [], [], 0
    clusters, lost_clusters = [], []
    with tempfile.TemporaryDirectory(prefix="netplan-bench-") as tmp, local_etcd() as etcd, \
            etcd.client() as client:
        specs = []
        for w, group in enumerate(names):
            path = Path(tmp) / f"w{w}.yaml"
            path.write_text(json.dumps(spec_dict(group, offset=w * per)))
            specs.append(str(path))
        # 4c: the same writers, each a cluster of its own (its own pool and services range)
        spread = []
        for w, group in enumerate(names):
            path = Path(tmp) / f"c{w}.yaml"
            path.write_text(json.dumps(dict(
                spec_dict(group, offset=w * per), cluster=f"{CLUSTER}{w}",
                pools=[{"name": POOL, "cidr": f"10.{w * 16}.0.0/12", "nodeMaskSize": 24}],
                services={"cidr": f"192.168.{w * 16}.0/20"})))
            spread.append(str(path))
        for run in range(runs):
            prefix = f"/bench4-netplan-{run}"
            took, lost = run_workers([["netplan", etcd.url, prefix, s] for s in specs])
            mine.append(took)
            lost_mine.append(lost)
            duplicates += check_leases(client, prefix, every)

            prefix = f"/bench4c-netplan-{run}"
            took, lost = run_workers([["netplan", etcd.url, prefix, s] for s in spread])
            clusters.append(took)
            lost_clusters.append(lost)
            duplicates += overlaps([c for w, group in enumerate(names)
                                    for c in held_cidrs(client, prefix, group, f"{CLUSTER}{w}")])

            prefix = f"/bench4-raw-{run}"
            took, lost = run_workers([["raw", etcd.url, prefix, *group] for group in names])
            theirs.append(took)
            lost_theirs.append(lost)
            duplicates += check_leases(client, prefix, every)
    ours, base = total / statistics.median(mine), total / statistics.median(theirs)
    label = f"{writers} allocators x {per}"
    return [
        _row(f"4. etcd {label}, dup {duplicates}", "keys/s", ours, base,
             ">= 0.5x anchor, 0 dup", ours >= 0.5 * base and duplicates == 0),
        _row(f"4b. {writers} x {per}: races lost a run (median)", "races",
             statistics.median(lost_mine), statistics.median(lost_theirs), "reported", True),
        _row(f"4c. {writers} clusters x {per}, one etcd", "keys/s",
             total / statistics.median(clusters), base, "reported", True),
        _row(f"4d. {writers} clusters x {per}: races lost a run (median)", "races",
             statistics.median(lost_clusters), statistics.median(lost_theirs), "reported",
             True),
    ]


# --- 7. store size ---------------------------------------------------------------------------


def time_process(cmd: list[str], runs: int) -> tuple[float, str | None]:
    """Median wall time of a process, its output discarded; and its error if it failed."""
    times, error = [], None
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=600)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            error = f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    return statistics.median(times), error


def exhaustion_spec(quick: bool):
    """Every /24 of the pool taken: 10.0.0.0/8 (65,536 leases), quick: 10.0.0.0/12 (4,096)."""
    from planner.spec import parse_spec

    pool = "10.0.0.0/12" if quick else V4_POOL
    count = ipaddress.ip_network(pool).num_addresses >> 8
    return parse_spec(spec_dict([f"node-{i:05d}" for i in range(count)], pool=pool)), count


def write_all(url: str, spec) -> None:
    """Allocate the spec into a store (setup, not timed)."""
    from ipam.store import StoreOptions, open_store
    from planner.plan import build_plan

    with open_store(url, StoreOptions(timeout=30)) as store:
        store.update(lambda snapshot: ((plan := build_plan(spec, snapshot)).write(), plan))


def show_rows(labels: tuple[str, str], store: str, anchor: list[str], runs: int) -> list[dict]:
    """`netplan show` of the whole store as JSON and as the default table, against a dump."""
    from netplan_cli import netplan_path

    base, error = time_process(anchor, runs)
    if error:
        raise RuntimeError(f"bench: {anchor[0]}: {error}")
    rows = []
    for label, output in zip(labels, ("json", "table")):
        took, error = time_process([netplan_path(), "show", "-o", output, "--store", store], runs)
        if error:
            print(f"note: 7, {label}: netplan show -o {output}: {error}", file=sys.stderr)
            rows.append(_row(f"{label}: show -o {output} FAILS", "s", took, base,
                             "show completes", False))
        else:
            rows.append(_row(f"{label}: show -o {output} (dump anchor)", "s", took, base,
                             "reported", True))
    return rows


def scenario_store_size(quick: bool) -> list[dict]:
    from ipam.errors import StoreError
    from ipam.state import Snapshot
    from ipam.store.codec import record_to_json
    from planner.plan import build_plan

    runs = 5
    spec, count = exhaustion_spec(quick)
    n = f"{count:,}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="netplan-bench-") as tmp:
        db = str(Path(tmp) / "netplan.db")
        write_all(db, spec)
        rows.append(_row(f"7. SQLite {n} leases: bytes per lease", "B",
                         os.path.getsize(db) / count, None, "reported", True))
        rows += show_rows((f"7b. SQLite {n}", f"7c. SQLite {n}"), db,
                          ["sqlite3", db, "select cluster, pool, node, cidr from leases"], runs)

    # The cluster record (every node's name and addresses) is one key, written in one
    # transaction: etcd refuses requests above --max-request-bytes (default 1.5 MiB).
    record = len(record_to_json(build_plan(spec, Snapshot()).record))
    with local_etcd() as etcd:
        try:
            write_all(etcd.url, spec)
            refused = None
        except StoreError as exc:
            refused = str(exc)
            print(f"note: 7, etcd with its default limits: {refused}", file=sys.stderr)
    rows.append(_row(f"7d. etcd {n}: default etcd (MiB a 1-key record would be)", "MiB",
                     record / 2**20, None,
                     "allocate completes", refused is None))
    # Measured all the same, with etcd's request limit raised (a flag of etcd's own).
    raised = ("--max-request-bytes", str(8 << 20)) if refused else ()
    with local_etcd(*raised) as etcd:
        write_all(etcd.url, spec)
        (status,) = json.loads(etcd.etcdctl("endpoint", "status", "-w", "json"))
        etcd.etcdctl("compact", str(status["Status"]["header"]["revision"]))
        etcd.etcdctl("defrag")
        (status,) = json.loads(etcd.etcdctl("endpoint", "status", "-w", "json"))
        rows.append(_row(f"7e. etcd {n}: bytes per lease" + (" (8 MiB req.)" if raised else ""),
                         "B", status["Status"]["dbSize"] / count, None, "reported", True))
        rows += show_rows((f"7f. etcd {n}", f"7g. etcd {n}"), etcd.url,
                          ["etcdctl", f"--endpoints=http://{etcd.members[0].endpoint}", "get",
                           "--prefix", f"/netplan/{CLUSTER}/leases/"], runs)
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(worker(sys.argv[2:]))
    sys.exit("usage: run tests/bench/run.py; this file runs itself as scenario 4's workers")
