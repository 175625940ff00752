"""The stored lease JSON: lease_to_json spells out what json.dumps(sort_keys=True) writes."""

import json

import pytest

from hypothesis import given
from hypothesis import strategies as st

from ipam.allocation import Lease
from ipam.net import Cidr
from ipam.store.codec import lease_from_json, lease_to_json

names = st.text(min_size=1, max_size=20)  # any text: quotes, backslashes, controls, non-ASCII


@st.composite
def leases(draw):
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    prefixlen = draw(st.integers(0, bits))
    value = draw(st.integers(0, (1 << bits) - 1)) >> (bits - prefixlen) << (bits - prefixlen)
    return Lease(draw(names), draw(names), draw(names), Cidr(version, value, prefixlen))


@given(leases())
def test_lease_json_is_json_dumps_byte_for_byte(lease):
    expected = json.dumps({"cluster": lease.cluster, "pool": lease.pool, "node": lease.node,
                           "cidr": str(lease.cidr)}, sort_keys=True)
    assert lease_to_json(lease) == expected
    assert lease_from_json(lease_to_json(lease)) == lease


@given(leases(), st.sampled_from(["", " ", "\n", " \t\r\n"]), st.sampled_from(["", " ", "\n"]))
def test_lease_json_is_read_as_json_loads_reads_it(lease, before, after):
    text = before + lease_to_json(lease) + after
    assert lease_from_json(text) == lease_from_json(text.encode()) == lease


def test_a_lease_value_with_trailing_text_is_refused():
    text = lease_to_json(Lease("c", "p", "n", Cidr(4, 0, 24)))
    for bad in (text + "x", text + text, text[:-1], "[" + text + "]"):
        with pytest.raises((ValueError, TypeError, KeyError)):
            lease_from_json(bad)
