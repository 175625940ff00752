"""The etcd store's node pages: what split writes, join reads back as the same record."""

import json
from dataclasses import replace
import zlib

from hypothesis import given
from hypothesis import strategies as st

from ipam.net import Address
from ipam.state import ClusterRecord
from ipam.store.etcd.layout import PAGE_MAX, PAGE_NODES, Entry, join, split

names = st.text(min_size=1, max_size=12)  # any text: quotes, backslashes, non-ASCII
v4 = st.integers(0, 2**32 - 1).map(lambda v: Address(4, v))
v6 = st.integers(0, 2**128 - 1).map(lambda v: Address(6, v))


@st.composite
def records(draw):
    """A record as the planner makes it: nodes in spec order, each with one or two
    addresses (one per family) and an IPv4 router id, most often its own IPv4 address."""
    nodes = draw(st.lists(names, unique=True, max_size=300))
    # Kept nodes (their leases kept, out of the spec) come last, by name; some without
    # addresses at all.
    kept = sorted(draw(st.sets(st.sampled_from(nodes))) if nodes else ())
    nodes = [n for n in nodes if n not in kept] + kept
    bare = draw(st.sets(st.sampled_from(kept))) if kept else set()
    hosts, router_ids = [], []
    for node in [n for n in nodes if n not in bare]:
        addresses = draw(st.sampled_from([[v4], [v6], [v4, v6]]))
        own = [draw(a) for a in addresses]
        hosts += [(node, a) for a in own]
        router_ids.append((node, draw(v4 if own[0].version == 6 else
                                      st.one_of(st.just(own[0]), v4))))
    return ClusterRecord("demo", hosts=tuple(hosts), router_ids=tuple(router_ids),
                         kept=tuple(kept))


def entries(pages: dict) -> dict[str, dict[str, Entry]]:
    """What EtcdStore's read makes of stored pages: each page's entries by its first node."""
    out = {}
    for first, page in pages.items():
        out[first] = {}
        for node, data in json.loads(page.value).items():
            rid = data["routerId"]
            out[first][node] = Entry(data["index"], [_parse(a) for a in data["addresses"]],
                                      None if rid is None else _parse(rid),
                                      data.get("kept", False), 1)
    return out


def read_back(small: ClusterRecord, pages: dict) -> ClusterRecord:
    """What EtcdStore's read makes of the stored pages (all from one revision)."""
    return join(small, {n: e for page in entries(pages).values() for n, e in page.items()})


def _parse(text: str) -> Address:
    from ipam.net import parse_address

    return parse_address(text)


@given(records())
def test_pages_read_back_as_the_record_and_are_json_dumps_byte_for_byte(record):
    small, pages = split(record, {}, {})
    assert small.hosts == () and small.router_ids == ()
    assert read_back(small, pages) == record
    for first, page in pages.items():
        data = json.loads(page.value)
        assert page.value == json.dumps(data, sort_keys=True)
        assert first == min(data) and len(data) <= PAGE_MAX
        assert page.addresses == {n: frozenset(map(_parse, d["addresses"]))
                                  for n, d in data.items()}
    # Pages are runs of names in order, each starting at the first name or at a boundary.
    runs = [sorted(json.loads(p.value)) for _, p in sorted(pages.items())]
    assert [n for run in runs for n in run] == sorted({n for n, _ in record.hosts} | {*record.kept})
    for i, run in enumerate(runs):
        assert i == 0 or zlib.crc32(run[0].encode()) % PAGE_NODES == 0 or len(runs[i - 1]) \
            == PAGE_MAX


def test_a_long_run_without_boundaries_is_cut_at_page_max():
    nodes = [f"n{i}" for i in range(20_000) if zlib.crc32(f"n{i}".encode()) % PAGE_NODES][:1100]
    record = ClusterRecord("demo", hosts=tuple((n, Address(4, i)) for i, n in enumerate(nodes)))
    small, pages = split(record, {}, {})
    assert sorted(len(json.loads(p.value)) for p in pages.values()) == [76, 512, 512]
    assert read_back(small, pages) == record


def test_a_record_not_in_node_shape_is_kept_whole():
    a, b = Address(4, 1), Address(4, 2)
    # Router ids listed in another order than the hosts: pages would not read back the same.
    record = ClusterRecord("demo", hosts=(("x", a), ("y", b)), router_ids=(("y", b), ("x", a)))
    assert split(record, {}, {}) is None


@given(records(), st.data())
def test_pages_as_stored_are_not_written_again_and_the_others_are(before, data):
    """`before` as stored, then changed: nodes dropped (the later ones move up the spec), one
    node's addresses changed. A page comes out None (not written) exactly when its JSON
    would be the stored one; every other page is what it would be with nothing stored."""
    names = list(dict.fromkeys(n for n, _ in before.hosts))
    dropped = data.draw(st.sets(st.sampled_from(names))) if names else set()
    moved = data.draw(st.sampled_from(names)) if names else None
    new_address = data.draw(v4)
    after = replace(
        before,
        hosts=tuple((n, new_address if n == moved else a)
                    for n, a in before.hosts if n not in dropped),
        router_ids=tuple(x for x in before.router_ids if x[0] not in dropped),
        kept=tuple(n for n in before.kept if n not in dropped))
    _, stored = split(before, {}, {})
    pages = entries(stored)
    stored_entries = {n: e for page in pages.values() for n, e in page.items()}
    _, fresh = split(after, stored_entries, {})
    _, reused = split(after, stored_entries, pages)
    assert reused.keys() == fresh.keys()
    for first, page in reused.items():
        if page is None:
            assert fresh[first].value == stored[first].value
        else:
            assert page == fresh[first]
            assert first not in stored or page.value != stored[first].value
    # Nothing changed: nothing to write.
    _, again = split(before, stored_entries, pages)
    assert all(page is None for page in again.values())


def test_a_page_is_written_again_when_only_its_nodes_place_in_the_spec_moved():
    nodes = [(f"n{i:03d}", Address(4, i)) for i in range(300)]
    before = ClusterRecord("demo", hosts=tuple(nodes), router_ids=tuple(nodes))
    _, stored = split(before, {}, {})
    pages = entries(stored)
    by_node = {n: e for page in pages.values() for n, e in page.items()}
    # n000 leaves: every other node moves up the spec by one, in every page.
    after = replace(before, hosts=tuple(nodes[1:]), router_ids=tuple(nodes[1:]))
    _, reused = split(after, by_node, pages)
    assert len(stored) > 2 and all(page is not None for page in reused.values())


def test_a_kept_node_and_the_spec_nodes_that_stay_in_place_are_not_written_again():
    nodes = [(f"n{i:03d}", Address(4, i)) for i in range(300)]
    kept = nodes[150:151]  # kept at index 150, where it stood in the spec
    spec = nodes[:150] + nodes[151:]
    before = ClusterRecord("demo", hosts=tuple(spec + kept), router_ids=tuple(spec + kept),
                           kept=("n150",))
    stored_by_node = {"n150": Entry(150, [Address(4, 150)], Address(4, 150), True, 1)}
    _, stored = split(before, stored_by_node, {})
    pages = entries(stored)
    assert pages[max(f for f in pages if f <= "n150")]["n150"].index == 150
    by_node = {n: e for page in pages.values() for n, e in page.items()}
    # A new node at the end of the spec: only its page is written.
    new = [("n300", Address(4, 300))]
    after = replace(before, hosts=tuple(spec + new + kept), router_ids=tuple(spec + new + kept))
    _, reused = split(after, by_node, pages)
    written = [first for first, page in reused.items() if page is not None]
    assert written == [max(f for f in reused if f <= "n300")]
