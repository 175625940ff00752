"""Stateful property test of the etcd store on the in-memory key-value layer: allocate,
release and re-plan (node masks and pools changed) with the run cut after any batch, as a
killed allocator or a lost etcd leaves it.

After every step, read with a fresh store object and checked with `ipaddress`: no two
leases overlap, no node is half-applied (a node holds one lease of every pool or none),
every lease belongs to a recorded cluster; after every run that is not cut, the store is
what the spec says (every node one CIDR of every pool, of its mask) and planning again
changes nothing.
"""

from __future__ import annotations

import ipaddress
import itertools

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ipam.errors import StoreError, StoreUnavailable
from ipam.store import StoreOptions
from ipam.store.etcd import EtcdStore
from ipam.store.etcd.memory_kv import MemoryKV
from planner.plan import build_plan
from planner.release import release_write
from planner.spec import parse_spec

NAMES = [f"node-{i}" for i in range(10)]
CLUSTER = "cut"
# Small transactions, so that a run of a few nodes takes several batches to cut between.
TXN_OPS = 8


def spec_of(nodes: list[str], v4_mask: int, v6: bool):
    pools = [{"name": "pods-v4", "cidr": "10.244.0.0/20", "nodeMaskSize": v4_mask}]
    if v6:
        pools.append({"name": "pods-v6", "cidr": "fd00:10:244::/56", "nodeMaskSize": 64})
    return parse_spec({
        "cluster": CLUSTER, "pools": pools, "services": {"cidr": "10.96.0.0/12"},
        "bgp": {"topology": "none"},
        "nodes": [{"name": n, "address": f"10.0.0.{10 + NAMES.index(n)}"} for n in nodes],
    })


class CutRuns(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.kv = MemoryKV(max_txn_ops=TXN_OPS)
        self.spec = None

    def _store(self) -> EtcdStore:
        return EtcdStore("etcd://memory", StoreOptions(), kv=self.kv)

    def _run(self, plan, cut: int | None) -> bool:
        """Whether the run completed; cut: transactions that land before etcd goes. After a
        cut every node holds what it held before the run, or all of what the run gave it."""
        before = self._by_node()
        self.kv.cut_after(cut)
        refused = None
        try:
            with self._store() as store:
                store.update(plan, cluster=CLUSTER)
            done = True
        except StoreUnavailable:
            event("a run cut after a batch")
            done = False
        except StoreError as exc:
            refused, done = exc, False
        if self.kv.is_cut:
            # The writer lost etcd (maybe only as it let its lock go): its etcd leases
            # lapse, as real ones do LOCK_TTL seconds later.
            self.kv.cut_after(None)
            self.kv.expire_all()
        self.kv.cut_after(None)
        if refused is not None:
            # Nodes that take each other's addresses land in one transaction; more of them
            # than it holds is refused before anything is written.
            assert "operations in one transaction" in str(refused), refused
            assert self._by_node() == before
            event("a run refused: its cycle exceeds a transaction")
        elif not done:
            self._whole_nodes(before)
        return done

    def _by_node(self) -> dict[str, frozenset]:
        state = self._store().snapshot().clusters.get(CLUSTER)
        by_node: dict[str, set] = {}
        for x in state.leases if state else ():
            by_node.setdefault(x.node, set()).add((x.pool, str(x.cidr)))
        return {n: frozenset(h) for n, h in by_node.items()}

    def _whole_nodes(self, before: dict[str, frozenset]) -> None:
        state = self._store().snapshot().clusters.get(CLUSTER)
        pools = {p.pool.name: p.pool for p in state.record.pools} if state else {}
        for node, held in self._by_node().items():
            if held == before.get(node):
                continue
            shape = {pool: ipaddress.ip_network(cidr) for pool, cidr in held}
            assert set(shape) == set(pools) and all(
                net.subnet_of(ipaddress.ip_network(str(pools[p].cidr)))
                and net.prefixlen == pools[p].node_mask for p, net in shape.items()), \
                f"{node} half-applied: {sorted(held)} (before: {sorted(before.get(node, ()))})"

    @rule(nodes=st.sets(st.sampled_from(NAMES), min_size=1), mask=st.sampled_from([24, 25, 26]),
          v6=st.booleans(), cut=st.none() | st.integers(0, 6))
    def allocate(self, nodes, mask, v6, cut) -> None:
        spec = spec_of(sorted(nodes), mask, v6)
        done = self._run(lambda s: ((p := build_plan(spec, s)).write(), p), cut)
        self.spec = spec if done else None

    @rule(node=st.sampled_from(NAMES), cut=st.none() | st.integers(0, 2))
    def release(self, node, cut) -> None:
        snapshot = self._store().snapshot()
        if CLUSTER not in snapshot.clusters:
            return
        done = self._run(lambda s: release_write(s, CLUSTER, [node], False), cut)
        if not done or (self.spec is not None and node in {n.name for n in self.spec.nodes}):
            self.spec = None  # the store no longer is what the spec says, until allocate

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "kv"):
            return
        snapshot = self._store().snapshot()
        state = snapshot.clusters.get(CLUSTER)
        if state is None:
            return
        assert state.record is not None, "leases without their cluster's record"
        nets = [ipaddress.ip_network(str(x.cidr)) for x in state.leases]
        for a, b in itertools.combinations(nets, 2):
            assert a.version != b.version or not a.overlaps(b), (a, b)
        pools: dict[str, list[str]] = {}
        for x in state.leases:
            pools.setdefault(x.node, []).append(x.pool)
        for node, held in pools.items():
            assert len(held) == len(set(held)), f"{node} holds two leases of a pool: {held}"

    @invariant()
    def complete_after_an_uncut_run(self) -> None:
        if getattr(self, "spec", None) is None:
            return
        snapshot = self._store().snapshot()
        state = snapshot.clusters[CLUSTER]
        by_node = {}
        for x in state.leases:
            by_node.setdefault(x.node, {})[x.pool] = ipaddress.ip_network(str(x.cidr))
        for node in self.spec.nodes:
            for pool in self.spec.pools:
                got = by_node.get(node.name, {}).get(pool.name)
                assert got is not None, f"{node.name} has no lease of {pool.name}"
                assert got.subnet_of(ipaddress.ip_network(str(pool.cidr)))
                assert got.prefixlen == pool.node_mask
        again = build_plan(self.spec, snapshot)
        assert {c.action for c in again.allocation.changes} <= {"keep"}, again.allocation.changes


CutRuns.TestCase.settings = settings(max_examples=150, stateful_step_count=12, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
test_etcd_runs_cut_after_any_batch = CutRuns.TestCase
