"""Table tests of one pool's node CIDRs, each with an IPv4 and an IPv6 twin."""

import ipaddress

import pytest

from ipam.allocation import Lease, Released, plan_allocation
from ipam.errors import InvalidInput, PinConflict, PoolExhausted
from ipam.net import Cidr, parse_cidr
from ipam.pool import Pool, PoolMap

C = parse_cidr

# (pool, node mask, reserved) twins: the same shape of pool in each family.
TWINS = {
    "v4": ("10.244.0.0/16", 24),
    "v6": ("fd00:10:244::/48", 64),
}


def pool(family: str, name: str = "pods") -> Pool:
    cidr, mask = TWINS[family]
    return Pool(name, C(cidr), mask)


def nth(family: str, index: int) -> str:
    """The index-th node CIDR of the twin pool, computed by the oracle (ipaddress)."""
    cidr, mask = TWINS[family]
    net = ipaddress.ip_network(cidr)
    start = net.network_address + index * (1 << (net.max_prefixlen - mask))
    return str(ipaddress.ip_network(f"{start}/{mask}"))


def tiny(family: str, slots: int) -> Pool:
    """A pool of the twin's node mask that holds exactly `slots` node CIDRs."""
    p = pool(family)
    width = slots.bit_length() - 1
    return Pool(p.name, Cidr(p.cidr.version, p.cidr.value, p.node_mask - width), p.node_mask)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_sequential_from_the_start_of_the_pool(family):
    pmap = PoolMap(pool(family))
    got = [str(pmap.allocate()) for _ in range(5)]
    assert got == [nth(family, i) for i in range(5)]


@pytest.mark.parametrize(
    "cidr, mask, capacity",
    [
        ("10.244.0.0/16", 24, 256),
        ("fd00:10:244::/48", 64, 65536),
        ("10.0.0.0/8", 24, 65536),
        ("fd00::/56", 64, 256),
        ("192.168.0.0/16", 26, 1024),
        ("fd00::/120", 124, 16),
        ("10.244.0.0/24", 24, 1),
        ("fd00::/64", 64, 1),
    ],
)
def test_capacity(cidr, mask, capacity):
    assert PoolMap(Pool("p", C(cidr), mask)).capacity == capacity


@pytest.mark.parametrize("cidr, mask", [("10.244.0.0/16", 24), ("fd00:10:244::/48", 64)])
def test_exhaustion_at_exactly_the_capacity(cidr, mask):
    p = Pool("pods", C(cidr), mask)
    nodes = [f"n{i:05d}" for i in range(p.slots)]
    alloc = plan_allocation("c", [p], (), nodes, {}, (), (), 1)
    cidrs = {lease.cidr for lease in alloc.leases}
    assert len(cidrs) == p.slots == len(nodes)
    with pytest.raises(PoolExhausted) as exc:
        plan_allocation("c", [p], (), nodes + ["one-more"], {}, (), (), 1)
    message = str(exc.value)
    assert "pods" in message and str(p.slots) in message and str(p.slots + 1) in message


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_released_cidrs_come_back_last_oldest_first(family):
    pmap = PoolMap(pool(family))
    first = [pmap.allocate() for _ in range(4)]
    pmap.release(first[2], seq=5)
    pmap.release(first[0], seq=7)
    pmap.release(first[1], seq=7)
    # Never-used CIDRs first ...
    assert pmap.allocate() == C(nth(family, 4))
    # ... then, had none been left, the oldest release, ties by lowest CIDR.
    s = PoolMap(tiny(family, 4))
    got = [s.allocate() for _ in range(4)]
    s.release(got[2], seq=5)
    s.release(got[1], seq=7)
    s.release(got[0], seq=7)
    assert [s.allocate() for _ in range(3)] == [got[2], got[0], got[1]]
    assert s.allocate() is None


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_history_from_the_store_orders_reuse(family):
    small = tiny(family, 2)
    a, b = small.cidr_at(0), small.cidr_at(1)
    history = [Released("c", small.name, b, 3), Released("c", small.name, a, 9)]
    alloc = plan_allocation("c", [small], (), ["x"], {}, (), history, 10)
    assert [lease.cidr for lease in alloc.leases] == [b]


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_a_cidr_freed_again_counts_from_its_latest_release(family):
    # a was freed at 1 and b at 2; a was handed out again and its node leaves now (seq 3):
    # b is the older release and is reused first (found by the allocation state machine).
    small = tiny(family, 2)
    a, b = small.cidr_at(0), small.cidr_at(1)
    history = [Released("c", small.name, a, 1), Released("c", small.name, b, 2)]
    stored = [Lease("c", small.name, "old", a)]
    alloc = plan_allocation("c", [small], (), ["new"], {}, stored, history, 3)
    assert [lease.cidr for lease in alloc.leases] == [b]
    assert alloc.released == (Released("c", small.name, a, 3),)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_pinned_cidrs_are_taken_before_anyone_else(family):
    p = pool(family)
    pin = C(nth(family, 0))
    alloc = plan_allocation("c", [p], (), ["a", "b", "z"], {("z", p.name): pin}, (), (), 1)
    got = {lease.node: str(lease.cidr) for lease in alloc.leases}
    assert got == {"z": nth(family, 0), "a": nth(family, 1), "b": nth(family, 2)}


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_a_pin_held_by_another_node_is_a_conflict(family):
    p = pool(family)
    held = Lease("c", p.name, "a", C(nth(family, 0)))
    with pytest.raises(PinConflict, match="held by node a"):
        plan_allocation("c", [p], (), ["a", "b"], {("b", p.name): held.cidr}, [held], (), 1)


@pytest.mark.parametrize(
    "cidr, mask, reserved, capacity, first",
    [
        ("10.244.0.0/16", 24, ["10.244.0.0/23", "10.244.1.128/28"], 254, "10.244.2.0/24"),
        ("fd00:10:244::/48", 64, ["fd00:10:244::/63", "fd00:10:244:1::80/124"], 65534,
         "fd00:10:244:2::/64"),
        ("10.244.0.0/16", 24, ["10.244.0.0/16"], 0, None),
        ("fd00::/112", 120, ["fd00::/112"], 0, None),
    ],
)
def test_reserved_ranges_are_never_handed_out(cidr, mask, reserved, capacity, first):
    pmap = PoolMap(Pool("p", C(cidr), mask), tuple(C(r) for r in reserved))
    assert pmap.capacity == capacity
    got = pmap.allocate()
    assert (str(got) if got else None) == first


@pytest.mark.parametrize(
    "cidr, mask, ok",
    [
        ("fd00::/48", 64, True),  # 16 bits: Kubernetes' limit
        ("fd00::/47", 64, False),
        ("fd00::/104", 120, True),
        ("fd00::/103", 120, False),
        ("10.0.0.0/8", 24, True),  # IPv4 is not held to 16 bits
        ("10.0.0.0/8", 32, True),
        ("10.0.0.0/16", 15, False),
        ("10.0.0.0/16", 33, False),
        ("fd00::/64", 129, False),
    ],
)
def test_mask_limits(cidr, mask, ok):
    if ok:
        Pool("p", C(cidr), mask)
    else:
        with pytest.raises(InvalidInput, match="nodeMaskSize"):
            Pool("p", C(cidr), mask)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_a_lease_that_no_longer_fits_is_released_and_replaced(family):
    p = pool(family)
    wider_mask = Pool(p.name, p.cidr, p.node_mask - 2)
    lease = Lease("c", p.name, "a", C(nth(family, 3)))
    alloc = plan_allocation("c", [wider_mask], (), ["a"], {}, [lease], (), 4)
    actions = [(c.action, str(c.cidr)) for c in alloc.changes]
    assert actions[0] == ("release", nth(family, 3))
    assert actions[1] == ("allocate", str(wider_mask.cidr_at(0)))
