"""The etcd store's node pages: what _split writes, _join reads back as the same record."""

import json
import zlib

from hypothesis import given
from hypothesis import strategies as st

from ipam.net import Address
from ipam.store.base import ClusterRecord
from ipam.store.etcd import PAGE_MAX, PAGE_NODES, _join, _split

names = st.text(min_size=1, max_size=12)  # any text: quotes, backslashes, non-ASCII
v4 = st.integers(0, 2**32 - 1).map(lambda v: Address(4, v))
v6 = st.integers(0, 2**128 - 1).map(lambda v: Address(6, v))


@st.composite
def records(draw):
    """A record as the planner makes it: nodes in spec order, each with one or two
    addresses (one per family) and an IPv4 router id, most often its own IPv4 address."""
    nodes = draw(st.lists(names, unique=True, max_size=300))
    hosts, router_ids = [], []
    for node in nodes:
        addresses = draw(st.sampled_from([[v4], [v6], [v4, v6]]))
        own = [draw(a) for a in addresses]
        hosts += [(node, a) for a in own]
        router_ids.append((node, draw(v4 if own[0].version == 6 else
                                      st.one_of(st.just(own[0]), v4))))
    return ClusterRecord("demo", hosts=tuple(hosts), router_ids=tuple(router_ids))


def read_back(small: ClusterRecord, pages: dict) -> ClusterRecord:
    """What EtcdStore's read makes of the stored pages (all from one revision)."""
    nodes = {}
    for page in pages.values():
        for node, data in json.loads(page.value).items():
            rid = data["routerId"]
            nodes[node] = (data["index"], [_parse(a) for a in data["addresses"]],
                           None if rid is None else _parse(rid), 1)
    return _join(small, nodes)


def _parse(text: str) -> Address:
    from ipam.net import parse_address

    return parse_address(text)


@given(records())
def test_pages_read_back_as_the_record_and_are_json_dumps_byte_for_byte(record):
    small, pages = _split(record)
    assert small.hosts == () and small.router_ids == ()
    assert read_back(small, pages) == record
    for first, page in pages.items():
        data = json.loads(page.value)
        assert page.value == json.dumps(data, sort_keys=True)
        assert first == min(data) and len(data) <= PAGE_MAX
        assert page.addresses == {n: frozenset(d["addresses"]) for n, d in data.items()}
    # Pages are runs of names in order, each starting at the first name or at a boundary.
    runs = [sorted(json.loads(p.value)) for _, p in sorted(pages.items())]
    assert [n for run in runs for n in run] == sorted({n for n, _ in record.hosts})
    for i, run in enumerate(runs):
        assert i == 0 or zlib.crc32(run[0].encode()) % PAGE_NODES == 0 or len(runs[i - 1]) \
            == PAGE_MAX


def test_a_long_run_without_boundaries_is_cut_at_page_max():
    nodes = [f"n{i}" for i in range(20_000) if zlib.crc32(f"n{i}".encode()) % PAGE_NODES][:1100]
    record = ClusterRecord("demo", hosts=tuple((n, Address(4, i)) for i, n in enumerate(nodes)))
    small, pages = _split(record)
    assert sorted(len(json.loads(p.value)) for p in pages.values()) == [76, 512, 512]
    assert read_back(small, pages) == record


def test_a_record_not_in_node_shape_is_kept_whole():
    a, b = Address(4, 1), Address(4, 2)
    # Router ids listed in another order than the hosts: pages would not read back the same.
    record = ClusterRecord("demo", hosts=(("x", a), ("y", b)), router_ids=(("y", b), ("x", a)))
    assert _split(record) is None
