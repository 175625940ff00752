"""The etcd store's key layout and how a read of it becomes a snapshot: pure, no I/O.

Keys, all under the prefix (`--etcd-prefix`, default /netplan):

    <prefix>/_netplan                          the mark that netplan owns the prefix (below)
    <prefix>/_guard                            bumped whenever a cluster claims ranges: a
                                               record or a node with new addresses written
    <prefix>/_lock/<etcd lease id>             the claims lock (lock.py)
    <prefix>/<cluster>/record                  the cluster record (codec.record_to_json)
                                               without its hosts and router ids
    <prefix>/<cluster>/nodes/<first node>      a page of nodes' parts of the record: {node:
                                               {"addresses": [...], "index": i, ["kept":
                                               true,] "routerId": ...}}, named after its
                                               first node
    <prefix>/<cluster>/guard                   bumped by every batch that writes the cluster
    <prefix>/<cluster>/leases/<node>/<pool>    one lease (codec.lease_to_json): a node's
                                               leases under one prefix, watched alone by
                                               its speaker
    <prefix>/<cluster>/released/<pool>/<cidr>  history: a freed CIDR and its release seq
    <prefix>/<cluster>/ttl/<pool>/<node>       a lease tied to an etcd lease (ttl.py)
    <prefix>/<cluster>/lock/<etcd lease id>    the writers' lock (lock.py)

Cluster names cannot start with `_`, so the store's own keys never collide with a cluster.

Netplan before this layout kept leases at `<cluster>/leases/<pool>/<node>`. A read takes a
lease from its value, wherever its key is, and remembers the key; the cluster's next write
moves every lease still at an old key to its new one, node by node in the node's batch (the
new key put, the old deleted, in one transaction), so that no user loses a lease and a
watcher that counts keys sees no gap.

The prefix must be netplan's own: `release --all` deletes what lies under a cluster's name.
The first write marks it (`_netplan`); a prefix without the mark that holds any key netplan
would not have written (Kubernetes' /registry, say) is refused as a wrong --etcd-prefix.

A record's hosts and router ids grow with the cluster (65,536 nodes: some 4 MiB), more than
one etcd request (1.5 MiB) or gRPC reply (4 MiB) takes, so they are kept in pages of nodes;
the read puts them back in the order of their index (the spec's node order): hosts node by
node, router ids likewise. A page is a run of nodes in name order that starts where a
node's name hashes to a boundary (CRC-32 modulo PAGE_NODES is 0; PAGE_MAX nodes at most):
about 64 nodes, 6 KiB, a page, so a cold run of 5,000 nodes writes some 80 page keys beside
its 5,000 leases (one key a node doubled the operations), and a node that joins, leaves or
changes rewrites its own page only, wherever it stands in the spec. A kept node (out of the
spec, its leases kept) has `"kept": true` and keeps the index it was stored with, so that
its page stays as it is while other specs come and go; the read lists kept nodes after the
spec's, by name, as the planner does. A record whose hosts and router ids do not have that
shape (never one the planner makes) is stored whole in the record key, and node pages are
then ignored (and deleted); so is a record stored by an older netplan, until its next write
moves its nodes to their pages.

The release sequence is the etcd revision: snapshot.next_seq = read revision + 1, which is
higher than any seq stamped before (a write lands after the revision it planned from).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ipam.allocation import Lease, Released
from ipam.errors import InvalidInput, StoreError
from ipam.net import Address, parse_address, parse_cidr
from ipam.state import ClusterRecord, ClusterState, Snapshot
from ipam.store.codec import json_string, lease_from_json, record_from_json
from ipam.store.etcd.kv import KeyValue

# Node pages (see the top): a page starts at a node whose name's CRC-32 is 0 modulo
# PAGE_NODES, about 64 nodes (6 KiB) a page, and after PAGE_MAX nodes at the latest.
PAGE_NODES = 64
PAGE_MAX = 512
MARK = b'{"owner": "netplan"}'
# The kinds of key netplan writes under a cluster's name, and under the prefix itself.
CLUSTER_KINDS = frozenset({"record", "nodes", "guard", "leases", "released", "ttl", "lock"})
SINGLE_KEYS = frozenset({"record", "guard"})  # the others are folders of keys
_PREFIX = re.compile(r"(/[A-Za-z0-9._-]+)+")


def check_prefix(prefix: str) -> str:
    """The prefix as keys are built from it (no trailing slash); InvalidInput unless it is
    absolute, not the root, and made of plain path segments."""
    normal = prefix[:-1] if prefix.endswith("/") and len(prefix) > 1 else prefix
    if not _PREFIX.fullmatch(normal) or any(s in (".", "..") for s in normal.split("/")):
        raise InvalidInput("--etcd-prefix", prefix,
                           "must be an absolute key path of netplan's own, such as /netplan "
                           "(not empty, not /, segments of letters, digits, '.', '_', '-')")
    return normal


class Keys:
    """Every key of one store, built from its prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        self.root = self.prefix + "/"
        self.mark = self.root + "_netplan"
        self.global_guard = self.root + "_guard"
        self.claims_lock = self.root + "_lock"

    def of(self, cluster: str, *parts: str) -> str:
        return "/".join((self.prefix, cluster, *parts))

    def guard(self, cluster: str) -> str:
        return self.of(cluster, "guard")

    def lock(self, cluster: str) -> str:
        return self.of(cluster, "lock")

    def lease(self, lease: Lease) -> str:
        return self.of(lease.cluster, "leases", lease.node, lease.pool)

    def node_leases(self, cluster: str, node: str | None = None) -> str:
        """The prefix of one node's leases, or of the whole cluster's."""
        return self.of(cluster, "leases", node, "") if node else self.of(cluster, "leases", "")

    def ttl(self, lease: Lease) -> str:
        return self.of(lease.cluster, "ttl", lease.pool, lease.node)

    def released(self, entry: Released) -> str:
        return self.of(entry.cluster, "released", entry.pool, str(entry.cidr).replace("/", "-"))


def released_json(entry: Released) -> str:
    return json.dumps({"cluster": entry.cluster, "pool": entry.pool, "cidr": str(entry.cidr),
                       "seq": entry.seq}, sort_keys=True)


class Page(NamedTuple):
    value: str  # the page's JSON: {node: {"addresses": [...], "index": i, "routerId": ...}}
    addresses: dict[str, frozenset[Address]]  # node -> its addresses


def split(record: ClusterRecord, stored: Mapping[str, Entry] = {},
           stored_pages: Mapping[str, Mapping[str, Entry]] = {}
           ) -> tuple[ClusterRecord, dict[str, Page]] | None:
    """(the record without hosts, router ids and kept nodes, its node pages by first node),
    or None when reading the pages back would not give the same record (see the top).
    stored: each node's entry as read (a kept node keeps its index); stored_pages: each
    stored page's entries by its first node. A page whose entries are all as stored is not
    written again (value None): at 65,536 nodes, spelling out every page took 0.15 s."""
    kept = set(record.kept)
    named = dict.fromkeys([n for n, _ in record.router_ids] + [n for n, _ in record.hosts])
    order = [n for n in named if n not in kept] + sorted(kept)
    addresses: dict[str, list] = {n: [] for n in order}
    for node, addr in record.hosts:
        addresses[node].append(addr)
    router_ids = dict(record.router_ids)
    if (len(router_ids) != len(record.router_ids)
            or tuple((n, a) for n in order for a in addresses[n]) != record.hosts
            or tuple((n, router_ids[n]) for n in order if n in router_ids)
            != record.router_ids
            or list(record.kept) != sorted(kept)):
        return None
    index = {n: stored[n].index if n in kept and n in stored else i
             for i, n in enumerate(order)}
    pages: dict[str, Page | None] = {}
    page: list[str] = []

    def unchanged(n: str, was: Entry | None) -> bool:
        return (was is not None and was.index == index[n] and was.kept == (n in kept)
                and was.addresses == addresses[n] and was.router_id == router_ids.get(n))

    def close() -> None:
        was = stored_pages.get(page[0], {})
        if len(was) == len(page) and all(unchanged(n, was.get(n)) for n in page):
            pages[page[0]] = None
            page.clear()
            return
        entries = []
        for n in page:
            # Addresses print as digits, dots and colons: quoted as they are.
            quoted = [f'"{a}"' for a in addresses[n]]
            rid = router_ids.get(n)
            # The router id is most often the node's first address: its text is known.
            rid_text = ("null" if rid is None else
                        quoted[0] if quoted and rid == addresses[n][0] else f'"{rid}"')
            flag = '"kept": true, ' if n in kept else ""
            entries.append(f'{json_string(n)}: {{"addresses": [{", ".join(quoted)}], '
                           f'"index": {index[n]}, {flag}"routerId": {rid_text}}}')
        # json.dumps(..., sort_keys=True) byte for byte (names in page are in sorted order),
        # spelled out as codec.lease_to_json is: it runs for every node of a cluster.
        pages[page[0]] = Page("{" + ", ".join(entries) + "}",
                               {n: frozenset(addresses[n]) for n in page})
        page.clear()

    for node in sorted(order):
        if page and (len(page) >= PAGE_MAX or zlib.crc32(node.encode()) % PAGE_NODES == 0):
            close()
        page.append(node)
    if page:
        close()
    return replace(record, hosts=(), router_ids=(), kept=()), pages


class Entry(NamedTuple):
    """A node's entry as read from its page."""

    index: int
    addresses: list
    router_id: object  # Address or None
    kept: bool
    revision: int  # the page's mod revision: of two pages naming the node, the newer wins


def join(record: ClusterRecord, nodes: dict[str, Entry]) -> ClusterRecord:
    """The record with the hosts, router ids and kept nodes of its node pages: the spec's
    nodes in the order of their index, then the kept ones by name."""
    if record.hosts or record.router_ids or not nodes:
        return record  # stored whole: node pages, if any, are stale
    kept = sorted(n for n, e in nodes.items() if e.kept)
    order = sorted((n for n, e in nodes.items() if not e.kept),
                   key=lambda n: (nodes[n].index, n)) + kept
    return replace(record,
                   hosts=tuple((n, a) for n in order for a in nodes[n].addresses),
                   router_ids=tuple((n, nodes[n].router_id) for n in order
                                    if nodes[n].router_id is not None),
                   kept=tuple(kept))


@dataclass
class Meta:
    """What a write compares against, and the stored keys behind the snapshot."""

    revision: int
    marked: bool = False  # the prefix carries netplan's mark
    global_guard: int = 0  # mod revision of <prefix>/_guard, 0 while absent
    guards: dict[str, int] = field(default_factory=dict)  # cluster -> guard mod revision
    records: dict[str, bytes] = field(default_factory=dict)  # cluster -> stored record JSON
    pages: dict[str, dict[str, bytes]] = field(default_factory=dict)  # cluster -> key -> value
    entries: dict[str, dict[str, Entry]] = field(default_factory=dict)  # cluster -> node
    # cluster -> a page's first node -> the entries of that page, as stored
    page_entries: dict[str, dict[str, dict[str, Entry]]] = field(default_factory=dict)
    lease_keys: dict[Lease, str] = field(default_factory=dict)
    # Leases whose keys live and die with an etcd lease: lease -> its etcd lease id.
    attached: dict[Lease, int] = field(default_factory=dict)
    # cluster -> leases still at a key of the old layout (moved by the cluster's next write)
    moved: dict[str, list[Lease]] = field(default_factory=dict)
    # cluster -> {(pool, node): (the lease as tied to an etcd lease, its ttl key)}
    ttl: dict[str, dict[tuple[str, str], tuple[Lease, str]]] = field(default_factory=dict)
    # cluster -> TTL leases etcd has expired: (the history entry stated for it, its ttl key)
    expired: dict[str, list[tuple[Released, str]]] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)  # clusters whose writers' lock is held


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _page(value: bytes, revision: int) -> dict[str, Entry]:
    page = {}
    for node, data in json.loads(value).items():
        texts, rid = data["addresses"], data["routerId"]
        addresses = [parse_address(a) for a in texts]
        page[node] = Entry(
            int(data["index"]), addresses,
            # Most often the node's first address, parsed already.
            addresses[0] if texts and rid == texts[0] else
            None if rid is None else parse_address(rid),
            data.get("kept", False) is True, revision)
    return page


def parse(keys: Keys, revision: int, kvs: Sequence[KeyValue]) -> tuple[Snapshot, Meta]:
    """The snapshot a read of every key under the prefix at one revision makes, and what a
    write needs to know of the keys behind it."""
    meta = Meta(revision)
    root = keys.root
    records = {}
    nodes: dict[str, dict[str, Entry]] = meta.entries
    leases: dict[str, list[Lease]] = {}
    history: dict[str, dict[tuple[str, object], Released]] = {}
    foreign = None
    for kv in kvs:
        key = kv.key.decode()
        cluster, _, rest = key[len(root):].partition("/")
        kind = rest.split("/", 1)[0]
        try:
            if cluster.startswith("_"):
                if cluster == "_netplan" and not rest:
                    meta.marked = True
                elif cluster == "_guard" and not rest:
                    meta.global_guard = kv.mod_revision
                elif cluster != "_lock":
                    foreign = foreign or key
            elif kind not in CLUSTER_KINDS or (rest == kind) != (kind in SINGLE_KEYS):
                foreign = foreign or key
            elif kind == "guard":
                meta.guards[cluster] = kv.mod_revision
            elif kind == "record":
                records[cluster] = record_from_json(kv.value)
                meta.records[cluster] = kv.value
            elif kind == "nodes":
                meta.pages.setdefault(cluster, {})[key] = kv.value
                page = _page(kv.value, kv.mod_revision)
                meta.page_entries.setdefault(cluster, {})[rest[len("nodes/"):]] = page
                # Two pages name a node only after an interrupted run: the newer wins.
                stored = nodes.setdefault(cluster, {})
                for node, entry in page.items():
                    if node not in stored or stored[node].revision < kv.mod_revision:
                        stored[node] = entry
            elif kind == "leases":
                lease = lease_from_json(kv.value)
                leases.setdefault(cluster, []).append(lease)
                meta.lease_keys[lease] = key
                if kv.lease:
                    meta.attached[lease] = kv.lease
                if key != keys.lease(lease):
                    meta.moved.setdefault(cluster, []).append(lease)
            elif kind == "released":
                data = json.loads(kv.value)
                entry = Released(cluster, data["pool"], parse_cidr(data["cidr"]), data["seq"])
                history.setdefault(cluster, {})[(entry.pool, entry.cidr)] = entry
            elif kind == "ttl":
                lease = lease_from_json(kv.value)
                meta.ttl.setdefault(cluster, {})[(lease.pool, lease.node)] = (lease, key)
            elif kind == "lock":
                meta.locked.add(cluster)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"etcd key {key}: malformed value ({_one_line(str(exc))})") from exc
    if foreign is not None and not meta.marked:
        raise InvalidInput("--etcd-prefix", keys.prefix,
                           f"holds keys that netplan did not write ({foreign}): give netplan "
                           "a prefix of its own")
    # A TTL lease whose key etcd deleted on expiry was released then: its history entry is
    # stated here (seq: this revision) and written by the cluster's next update.
    for cluster, tied in meta.ttl.items():
        live = set(leases.get(cluster, ()))
        for lease, key in tied.values():
            if lease not in live:
                entry = Released(cluster, lease.pool, lease.cidr, revision)
                meta.expired.setdefault(cluster, []).append((entry, key))
                history.setdefault(cluster, {})[(entry.pool, entry.cidr)] = entry
    clusters = {
        name: ClusterState(
            join(records[name], nodes.get(name, {})) if name in records else None,
            tuple(sorted(leases.get(name, ()))),
            tuple(sorted(history.get(name, {}).values())),
        )
        for name in sorted(set(records) | set(leases))
    }
    return Snapshot(clusters, revision + 1, revision), meta
