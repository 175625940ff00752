"""The sort-and-sweep overlap finder against a brute-force pairwise oracle (ipaddress)."""

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from ipam.conflicts import AVOID, HOST, POOL, RESERVED, SERVICES, Claim, conflicts, forbidden
from ipam.net import parse_address, parse_cidr

KINDS = [POOL, SERVICES, AVOID, RESERVED, HOST]


@st.composite
def claims(draw):
    family = draw(st.sampled_from([4, 6]))
    bits = 32 if family == 4 else 128
    base = 0x0A000000 if family == 4 else 0xFD00 << 112
    out = []
    for i in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(KINDS))
        # A small address space (2**10 addresses) so that overlaps are common.
        prefixlen = bits if kind == HOST else draw(st.integers(bits - 10, bits))
        offset = draw(st.integers(0, (1 << 10) - 1)) >> (bits - prefixlen) << (bits - prefixlen)
        net = ipaddress.ip_network((base + offset, prefixlen))
        out.append(Claim(kind, f"{kind}-{i}", parse_cidr(str(net))))
    return out


def brute_force(items):
    found = set()
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            na, nb = ipaddress.ip_network(str(a.cidr)), ipaddress.ip_network(str(b.cidr))
            if na.overlaps(nb) and forbidden(a, b):
                found.add(frozenset({a.label, b.label}))
    return found


@settings(max_examples=300)
@given(claims())
def test_sweep_finds_exactly_the_forbidden_overlaps(items):
    got = {frozenset({a.label, b.label}) for a, b in conflicts(items)}
    assert got == brute_force(items)


def test_host_claims_name_the_address():
    pool = Claim(POOL, "pools[0] (pods)", parse_cidr("10.244.0.0/16"), "demo")
    host = Claim(HOST, "node a", parse_address("10.244.1.1").as_cidr(), "demo")
    [(outer, inner)] = conflicts([host, pool])
    assert (outer, inner) == (pool, host)
    assert inner.describe() == "node a address 10.244.1.1"
