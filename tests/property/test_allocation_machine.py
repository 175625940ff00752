"""Stateful property tests: joins, leaves, pins, reserved ranges, re-shaped pools, releases
and re-plans, against an independent model written with the standard library's `ipaddress`.

After every step: no two leases overlap, every lease lies inside its pool and outside the
reserved, avoid, services and host ranges, the memory and SQLite stores hold the same state,
and that state is exactly what the model predicts (stickiness, pins first, never-used CIDRs
first, released ones oldest first, exhaustion, conflicts, nothing written on error).
"""

from __future__ import annotations

import ipaddress
import os
import tempfile

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ipam.errors import InvalidInput, NetplanError, RangeConflict, Unsatisfiable
from ipam.store.memory import MemoryStore
from ipam.store.sqlite import SQLiteStore
from planner.plan import build_plan
from planner.release import release_write
from planner.spec import parse_spec

# Per family: where pools live, the node mask, the hosts' network, services, avoid.
FAMILY = {
    4: dict(base="10.244.0.0", mask=24, hosts="10.0.0.0/24", services="10.96.0.0/12",
            avoid="10.1.0.0/16"),
    6: dict(base="fd00:10:244::", mask=64, hosts="fd00:0:0:1::/64",
            services="fd00:10:96::/108", avoid="fd00:1::/32"),
}
NAMES = [f"node-{i}" for i in range(12)]


def net(text: str):
    return ipaddress.ip_network(text)


class Model:
    """The expected allocation, computed independently of ipam/ with ipaddress."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], str] = {}  # (pool, node) -> cidr
        self.released: dict[tuple[str, str], int] = {}  # (pool, cidr) -> release run
        self.run = 0

    def plan(self, pools, reserved, hosts, nodes, pins, keep_removed):
        """The new leases and history, or the class of the error the plan must raise."""
        reserved_nets = [net(r) for r in reserved]
        for h in hosts.values():
            addr = ipaddress.ip_address(h)
            for _, cidr, _ in pools:
                if addr in net(cidr):
                    return RangeConflict
            if any(addr in r for r in reserved_nets):
                return RangeConflict
        for r in reserved_nets:
            if not any(r.version == net(c).version and r.subnet_of(net(c)) for _, c, _ in pools):
                return InvalidInput
        home: dict[tuple[str, str], str] = {}
        for node, pin_list in pins.items():
            for pin in pin_list:
                owner = [p for p in pools if net(pin).version == net(p[1]).version
                         and net(pin).subnet_of(net(p[1]))]
                if not owner or net(pin).prefixlen != owner[0][2]:
                    return InvalidInput
                home[(node, owner[0][0])] = pin
        self.run += 1
        leases = dict(self.leases)
        released = dict(self.released)
        names = {p[0] for p in pools}
        for (pool, node), cidr in sorted(self.leases.items()):
            if pool not in names and (node in nodes or not keep_removed):
                del leases[(pool, node)]
                released[(pool, cidr)] = self.run
        for name, cidr, mask in pools:
            pool_net = net(cidr)
            slots = [str(s) for s in pool_net.subnets(new_prefix=mask)]
            free = [s for s in slots if not any(net(s).overlaps(r) for r in reserved_nets)]
            held = {}
            for (pool, node), lease in sorted(self.leases.items()):
                if pool != name:
                    continue
                pin = home.get((node, name))
                fits = lease in free
                if (node not in nodes and not keep_removed) or not fits or (
                    pin is not None and pin != lease
                ):
                    del leases[(pool, node)]
                    released[(pool, lease)] = self.run
                else:
                    held[node] = lease
            taken = set(held.values())
            for node in nodes:
                pin = home.get((node, name))
                if pin is None or node in held:
                    continue
                if pin in taken or pin not in free:
                    return Unsatisfiable
                held[node] = pin
                taken.add(pin)
            fresh = [n for n in nodes if n not in held]
            available = [s for s in free if s not in taken]
            if len(fresh) > len(available):
                return Unsatisfiable
            never = [s for s in available if (name, s) not in released]
            again = sorted((s for s in available if (name, s) in released),
                           key=lambda s: (released[(name, s)], net(s)))
            for node in fresh:  # nodes arrive sorted by name
                held[node] = never.pop(0) if never else again.pop(0)
            for node, lease in held.items():
                leases[(name, node)] = lease
        return leases, released


class AllocationMachine(RuleBasedStateMachine):
    families: tuple[int, ...] = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.memory = MemoryStore()
        self.sqlite = SQLiteStore(os.path.join(self.tmp.name, "netplan.db"))
        self.model = Model()
        self.nodes: dict[str, int] = {}  # name -> host number
        self.inside: set[str] = set()  # nodes whose address was put inside a pool
        self.pins: dict[str, list[str]] = {}
        self.reserved: list[str] = []
        self.shape: dict[int, tuple[int, int]] = {}  # family -> (pool prefix, node mask)

    def teardown(self) -> None:
        self.tmp.cleanup()

    @initialize(data=st.data())
    def shape_pools(self, data):
        for fam in self.families:
            self.shape[fam] = self._draw_shape(data, fam)

    def _draw_shape(self, data, fam):
        mask = FAMILY[fam]["mask"] + data.draw(st.integers(0, 2), label="mask offset")
        width = data.draw(st.integers(1, 4), label="pool width")
        return mask - width, mask

    def _pool(self, fam) -> tuple[str, str, int]:
        prefix, mask = self.shape[fam]
        return f"pods-v{fam}", f"{FAMILY[fam]['base']}/{prefix}", mask

    def _address(self, fam, node) -> str:
        if node in self.inside:
            return str(net(self._pool(fam)[1]).network_address + 1 + self.nodes[node])
        return str(net(FAMILY[fam]["hosts"]).network_address + 10 + self.nodes[node])

    def _spec(self):
        pools = [self._pool(f) for f in self.families]
        spec = {
            "cluster": "prop",
            "pools": [{"name": n, "cidr": c, "nodeMaskSize": m} for n, c, m in pools],
            "services": {"cidrs": [FAMILY[f]["services"] for f in self.families]},
            "avoid": [FAMILY[f]["avoid"] for f in self.families],
            "reserved": list(self.reserved),
            "nodes": [
                {"name": n, "addresses": [self._address(f, n) for f in self.families],
                 **({"routerId": f"10.0.0.{self.nodes[n] + 10}"} if 4 not in self.families
                    else {}),
                 **({"podCIDRs": self.pins[n]} if self.pins.get(n) else {})}
                for n in sorted(self.nodes)
            ],
        }
        hosts = {n: self._address(self.families[0], n) for n in self.nodes}
        return spec, pools, hosts

    def _slot(self, data, fam) -> str:
        name, cidr, mask = self._pool(fam)
        prefix = net(cidr).prefixlen
        index = data.draw(st.integers(0, (1 << (mask - prefix)) - 1), label="slot")
        base = net(cidr).network_address + (index << (net(cidr).max_prefixlen - mask))
        return f"{base}/{mask}"

    # --- rules ---------------------------------------------------------------------------

    @rule(n=st.integers(0, len(NAMES) - 1))
    def join(self, n):
        self.nodes.setdefault(NAMES[n], n)

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def leave(self, data):
        node = data.draw(st.sampled_from(sorted(self.nodes)))
        del self.nodes[node]
        self.pins.pop(node, None)
        self.inside.discard(node)

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def pin(self, data):
        node = data.draw(st.sampled_from(sorted(self.nodes)))
        fam = data.draw(st.sampled_from(self.families))
        pins = [p for p in self.pins.get(node, []) if net(p).version != fam]
        self.pins[node] = pins + [self._slot(data, fam)]

    @precondition(lambda self: self.pins)
    @rule(data=st.data())
    def unpin(self, data):
        self.pins.pop(data.draw(st.sampled_from(sorted(self.pins))))

    @rule(data=st.data())
    def reserve(self, data):
        fam = data.draw(st.sampled_from(self.families))
        _, cidr, mask = self._pool(fam)
        prefix = data.draw(st.integers(net(cidr).prefixlen + 1, mask + 2), label="reserved len")
        subnets = list(net(cidr).subnets(new_prefix=prefix))
        self.reserved.append(str(data.draw(st.sampled_from(subnets[:64]))))
        self.reserved = sorted(set(self.reserved))

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    def unreserve(self, data):
        self.reserved.remove(data.draw(st.sampled_from(self.reserved)))

    @rule(data=st.data())
    def reshape(self, data):
        fam = data.draw(st.sampled_from(self.families))
        self.shape[fam] = self._draw_shape(data, fam)

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def misplace(self, data):
        """Put a node's address inside a pool: a conflict until it moves back."""
        node = data.draw(st.sampled_from(sorted(self.nodes)))
        self.inside ^= {node}

    @rule(data=st.data())
    def release(self, data):
        nodes = sorted({node for _, node in self.model.leases})
        if not nodes:
            return
        node = data.draw(st.sampled_from(nodes))
        for store in (self.memory, self.sqlite):
            store.update(lambda snap: release_write(snap, "prop", [node], False))
        self.model.run += 1
        for (pool, n), cidr in list(self.model.leases.items()):
            if n == node:
                del self.model.leases[(pool, n)]
                self.model.released[(pool, cidr)] = self.model.run

    @rule(keep_removed=st.booleans())
    def allocate(self, keep_removed):
        raw, pools, hosts = self._spec()
        spec = parse_spec(raw)
        nodes = sorted(self.nodes)
        expected = self.model.plan(pools, self.reserved, hosts, nodes, self.pins, keep_removed)
        before = [s.snapshot() for s in (self.memory, self.sqlite)]
        outcomes = []
        for store in (self.memory, self.sqlite):
            try:
                store.update(lambda snap: (lambda p: (p.write(), p))(
                    build_plan(spec, snap, keep_removed)))
                outcomes.append(None)
                event("allocate: applied")
            except NetplanError as exc:
                event(f"allocate: {type(exc).__name__}")
                outcomes.append(exc)
        if isinstance(expected, type):
            for exc in outcomes:
                assert isinstance(exc, expected), (expected, exc)
            # Nothing written on error.
            assert [s.snapshot() for s in (self.memory, self.sqlite)] == before
            return
        assert outcomes == [None, None], outcomes
        leases, released = expected
        self.model.leases, self.model.released = leases, released

    # --- invariants ----------------------------------------------------------------------

    def _stored(self, store):
        state = store.snapshot().clusters.get("prop")
        if state is None:
            return {}, {}
        leases = {(x.pool, x.node): str(x.cidr) for x in state.leases}
        history = {(x.pool, str(x.cidr)): x.seq for x in state.history}
        return leases, history

    @invariant()
    def stores_match_the_model(self):
        mem, mem_history = self._stored(self.memory)
        disk, disk_history = self._stored(self.sqlite)
        assert mem == disk == self.model.leases
        assert set(mem_history) == set(disk_history) == set(self.model.released)
        # Release order agrees with the model's (sequence numbers may differ in value).
        keys = sorted(self.model.released)
        assert sorted(keys, key=lambda k: (self.model.released[k], k)) == sorted(
            keys, key=lambda k: (mem_history[k], k))

    @invariant()
    def leases_are_disjoint_and_in_bounds(self):
        leases = [(pool, node, net(c)) for (pool, node), c in self.model.leases.items()]
        for i, (_, _, a) in enumerate(leases):
            for _, _, b in leases[i + 1:]:
                assert not a.overlaps(b), (a, b)
        stored = self.memory.snapshot().clusters.get("prop")
        if stored is None:
            return
        record = stored.record
        pools = {p.pool.name: (net(str(p.pool.cidr)), p.pool.node_mask) for p in record.pools}
        outside = [net(str(c)) for c in record.reserved + record.avoid + record.services]
        hosts = [ipaddress.ip_address(str(a)) for _, a in record.hosts]
        for pool, _, cidr in leases:
            if pool not in pools:
                continue  # a removed node's lease in a removed pool, kept on request
            pool_net, mask = pools[pool]
            assert cidr.subnet_of(pool_net) and cidr.prefixlen == mask
            assert not any(cidr.overlaps(o) for o in outside), cidr
            assert not any(h in cidr for h in hosts), cidr


settings_ = settings(max_examples=150, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


class IPv4Machine(AllocationMachine):
    families = (4,)


class IPv6Machine(AllocationMachine):
    families = (6,)


class DualStackMachine(AllocationMachine):
    families = (4, 6)


TestIPv4 = IPv4Machine.TestCase
TestIPv4.settings = settings_
TestIPv6 = IPv6Machine.TestCase
TestIPv6.settings = settings_
TestDualStack = DualStackMachine.TestCase
TestDualStack.settings = settings_
