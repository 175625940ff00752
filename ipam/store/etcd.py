"""The etcd store: leases as keys, every write a compare-and-swap transaction.

Keys, all under the prefix (`--etcd-prefix`, default /netplan):

    <prefix>/_guard                            bumped whenever a cluster claims ranges: a
                                               record or a node with new addresses written
    <prefix>/<cluster>/record                  the cluster record (codec.record_to_json)
                                               without its hosts and router ids
    <prefix>/<cluster>/nodes/<first node>      a page of nodes' parts of the record: {node:
                                               {"addresses": [...], "index": i, ["kept":
                                               true,] "routerId": ...}}, named after its
                                               first node
    <prefix>/<cluster>/guard                   bumped by every batch that writes the cluster
    <prefix>/<cluster>/leases/<pool>/<node>    one lease (codec.lease_to_json)
    <prefix>/<cluster>/released/<pool>/<cidr>  history: a freed CIDR and its release seq
    <prefix>/<cluster>/ttl/<pool>/<node>       a lease tied to an etcd lease (attach_ttl)
    <prefix>/<cluster>/lock/<etcd lease id>    the writers' lock: a writer's place in its
                                               queue, "pid@host", tied to that etcd lease
                                               (LOCK_TTL seconds); the first created holds it
    <prefix>/_lock/<etcd lease id>             the claims lock, likewise

Cluster names cannot start with `_`, so `_guard` and `_lock` never collide with a cluster.

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
spec's, by name, as the planner does. A record whose hosts and
router ids do not have that shape (never one the planner makes) is stored whole in the
record key, as before this layout, and node pages are then ignored (and deleted); so is a
record stored by an older netplan, until its next write moves its nodes to their pages.

A run reads everything at one revision, plans, and writes the plan in batches of at most
128 operations (etcd's default --max-txn-ops). Every batch compares the cluster guard's mod
revision with the one the run last saw (read, or set by its own previous batch) and bumps
it, so a batch of another writer of the cluster in between makes ours fail; the run then
re-reads and re-plans. The planner is idempotent: batches already written are part of the
fresh state, and the rest is planned again on top of them. A batch that writes the record,
or a node key with addresses the node did not have, also compares and bumps the global guard
(the run tracks its mod revision like the cluster guard's): two clusters racing for one
range both plan without the other, and only the first claim written lands; the other
re-plans, sees the first cluster and reports the conflict.

Writers of a cluster take turns on its writers' lock, a queue in the manner of etcd's own
mutex: each writer creates a key of its own under `<cluster>/lock/`, the first created
holds the lock, and each of the others waits for the key created just before its own to
go. `allocate` and `release` name their cluster and queue before they read: when the queue
is empty, the transaction that creates their key reads the store too (and so does every
lock a run takes: it always reads again). The run's last batch deletes its key, so the
next writer's turn begins as this one's ends, with no write of its own: a release wakes
one writer, not all. A caller that names no cluster queues once a race says writers are
queued: after it lost one, or when its read finds a key in the queue. Without the lock,
eight allocators starting together re-read and re-plan in turn after each lost race, and
most of their work is thrown away; with it they take turns. The lock orders writers, it
does not make them correct: every batch is still compared and swapped, so a writer that
waited LOCK_WAIT seconds goes on without it (and does not wait for it again), and a
writer that dies leaves the queue when its etcd lease expires (LOCK_TTL seconds; a live
writer keeps it alive, waiting or holding). An unraced run pays for it a lease grant and a
put in the transaction that reads: some 1.5 ms on a local etcd.

Clusters race too: every batch that claims ranges goes through the global guard, so writers
of different clusters that start together lose to each other's claims, each re-reading and
re-planning, over and over (the cluster's lock does not order them). A batch that claims
reads its cluster guard back when it fails: if that held, the winner was another cluster,
and the run takes the store's claims lock, `<prefix>/_lock`, before it reads again. It
keeps it only until its last claiming batch is written (the record and node pages go
first), so that the lease batches of different clusters still run side by side. A run
never waits for its cluster's lock while it holds the claims lock (it lets that go first),
so two runs never wait for each other.

Batch contents keep the store consistent whatever batch a run dies after:
- the record and then the node pages go first, so that a run's leases always belong to a
  recorded cluster and a lease of a node in the spec always comes with the node's addresses
  (a node that leaves may lose its entry before its lease: read, that is a kept node, and
  the next run completes). When the pages take more than one batch, a node may be named by
  a new page and an old one not yet deleted: the page written last wins;
- a node's deletes, creates and the history of the CIDRs it frees share a batch, and so do
  all nodes a CIDR moves between (it is freed in the batch that hands it out again), so no
  node is half-applied, no CIDR is held twice and no freed CIDR loses its history.
The release sequence is the etcd revision: snapshot.next_seq = read revision + 1, which is
higher than any seq stamped before (a write lands after the revision it planned from).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import random
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from ipam.allocation import Lease, Released
from ipam.errors import InvalidInput, StoreConflict, StoreError, StoreUnavailable
from ipam.gcpause import gc_paused
from ipam.net import Address, parse_address, parse_cidr
from ipam.state import ClusterRecord, ClusterState, ClusterWrite, Snapshot
from ipam.store.base import LeaseEvent, LeaseWatch, R, ResyncingWatch, Store
from ipam.store.codec import (
    json_string,
    lease_from_json,
    lease_to_json,
    record_from_json,
    record_to_json,
)

# gRPC's C core logs failed TLS handshakes and the like to stderr, around the one error line
# netplan prints; the same failures reach us as exceptions. Read when grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc
import pyetcd
from pyetcd import etcdrpc
from pyetcd import exceptions as etcd_errors
from pyetcd.events import PutEvent
from pyetcd.utils import prefix_range_end

if TYPE_CHECKING:
    from ipam.store import StoreOptions

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
# Every batch ends with the cluster guard's put and may bump the global guard; the last
# may let the writers' lock go.
BATCH_OPS = MAX_TXN_OPS - 3
# Keys and values a transaction carries at most: etcd refuses requests above 1.5 MiB
# (--max-request-bytes); 126 node pages of a few KiB each stay well below it.
BATCH_BYTES = 1 << 20
# Races lost in a row (none of our batches landing in between) before a run gives up.
MAX_CONFLICTS = 50
# The writers' lock (see the top): how long it outlives a writer that dies holding it, and
# how long a writer waits for it before it goes on without it.
LOCK_TTL = 10
LOCK_WAIT = 60
LOCK_SAY = 2.0  # a wait this long is said on stderr
PAGE = 10_000  # keys per range request: 10,000 leases are some 2 MiB (fewer round trips)
# Node pages (see the top): a page starts at a node whose name's CRC-32 is 0 modulo
# PAGE_NODES, about 64 nodes (6 KiB) a page, and after PAGE_MAX nodes at the latest.
PAGE_NODES = 64
PAGE_MAX = 512
# A fresh channel per reconnect, retried quickly: the default backoff grows to minutes.
GRPC_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000),
                # A range reply of PAGE keys: 2 MiB of leases, or node pages of 6 KiB (at
                # most 512 nodes, 50 KiB) each, well past gRPC's default 4 MiB. etcd sends
                # any size.
                ("grpc.max_receive_message_length", 128 << 20)]


# A range's first page read by a transaction: (the transaction's revision, the page).
_FirstPage = tuple[int, etcdrpc.RangeResponse]


class _Compacted(Exception):
    """The revision asked for is older than etcd's compaction."""


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """`etcd://h1:p1,h2:p2` -> [(h1, p1), (h2, p2)]; the port defaults to 2379."""
    body = url.removeprefix("etcd://").rstrip("/")
    if not body:
        raise InvalidInput("--store", url, "names no etcd endpoint (etcd://HOST:PORT)")
    endpoints = []
    for item in body.split(","):
        host, port = item, "2379"
        if item.startswith("["):  # [v6]:port
            close = item.find("]")
            host, rest = item[: close + 1], item[close + 1 :]
            if close < 0 or (rest and not rest.startswith(":")):
                raise InvalidInput("--store", url, f"has a malformed endpoint {item!r}")
            port = rest[1:] or port
        elif ":" in item:
            host, port = item.rsplit(":", 1)
        if not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidInput("--store", url, f"has a malformed endpoint {item!r} (HOST:PORT)")
        endpoints.append((host, int(port)))
    return endpoints


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _classify(exc: BaseException) -> tuple[str, str]:
    """('retry' | 'fatal' | 'compacted', reason) for an exception from pyetcd or gRPC.

    pyetcd turns UNAVAILABLE and DEADLINE_EXCEEDED into its own exceptions and drops the
    details; the gRPC error they came from is their __context__.
    """
    if isinstance(exc, etcd_errors.RevisionCompactedError):
        return "compacted", f"revision compacted at {exc.compacted_revision}"
    if isinstance(exc, (etcd_errors.ConnectionFailedError, etcd_errors.ConnectionTimeoutError,
                        etcd_errors.InternalServerError, etcd_errors.WatchTimedOut,
                        etcd_errors.NoServerAvailableError)):
        reason = str(exc) or type(exc).__name__
        rpc = exc.__context__
        if isinstance(rpc, grpc.RpcError) and hasattr(rpc, "details"):
            reason = rpc.details() or reason
        return "retry", _one_line(reason)
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code, details = exc.code(), _one_line(exc.details() or str(exc.code()))
        if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
            return "compacted", details
        # UNAUTHENTICATED: an expired auth token; a new connection authenticates afresh.
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.CANCELLED):
            return "retry", details
        return "fatal", details
    if isinstance(exc, etcd_errors.Etcd3Exception):
        return "fatal", _one_line(str(exc) or type(exc).__name__)
    if isinstance(exc, OSError):
        return "fatal", f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    raise exc  # not an etcd failure: a bug, let it surface as one


class _Etcd:
    """An etcd cluster reached through a list of endpoints, failing over in turn.

    Each endpoint gets its own pyetcd client (one gRPC channel, authenticated when a user is
    given), made on first use and dropped when it fails, so the next call goes to the next
    endpoint on a fresh channel.
    """

    def __init__(self, endpoints: list[tuple[str, int]], options: StoreOptions) -> None:
        self.endpoints = endpoints
        self.options = options
        self.where = ",".join(f"{h}:{p}" for h, p in endpoints)
        self._clients: dict[int, pyetcd.MultiEndpointEtcd3Client] = {}
        self._at = 0
        self._lock = threading.Lock()
        self._credentials: grpc.ChannelCredentials | None = None
        # One request may take the whole timeout only when there is no other endpoint to
        # try: a member that lost its leader holds a request until etcd's own timeout.
        self._request_timeout = options.timeout / min(2, len(endpoints))
        if bool(options.etcd_cert) != bool(options.etcd_key):
            raise InvalidInput("--etcd-cert" if options.etcd_cert else "--etcd-key",
                               options.etcd_cert or options.etcd_key,
                               "needs --etcd-cert and --etcd-key together")
        if options.etcd_user and options.etcd_password is None:
            raise InvalidInput("--etcd-user", options.etcd_user,
                               "needs the password in $NETPLAN_ETCD_PASSWORD")

    def _client(self, i: int) -> pyetcd.MultiEndpointEtcd3Client:
        with self._lock:
            client = self._clients.get(i)
        if client is not None:
            return client
        o = self.options
        secure = bool(o.etcd_ca or o.etcd_cert)
        if secure and self._credentials is None:
            self._credentials = pyetcd.MultiEndpointEtcd3Client.get_secure_creds(
                o.etcd_ca, o.etcd_key, o.etcd_cert)
        host, port = self.endpoints[i]
        # time_retry=0: pyetcd must not shelve the endpoint itself; failover happens here.
        endpoint = pyetcd.Endpoint(host, port, secure=secure, creds=self._credentials,
                                   time_retry=0, opts=GRPC_OPTIONS)
        client = pyetcd.MultiEndpointEtcd3Client(
            endpoints=[endpoint], timeout=self._request_timeout, user=o.etcd_user,
            password=o.etcd_password if o.etcd_user else None)
        with self._lock:
            kept = self._clients.setdefault(i, client)
        if kept is not client:  # another thread connected meanwhile: use one channel
            client.close()
        return kept

    def fail(self, client: pyetcd.MultiEndpointEtcd3Client) -> None:
        """Drop a client whose endpoint failed; the next call moves to the next endpoint."""
        with self._lock:
            for i, c in list(self._clients.items()):
                if c is client:
                    del self._clients[i]
                    if self._at == i:
                        self._at = (i + 1) % len(self.endpoints)
        client.close()

    def call(self, what: str, fn: Callable[[pyetcd.MultiEndpointEtcd3Client], T]) -> T:
        """fn on a live endpoint; StoreUnavailable when none answers within the timeout.

        A transaction retried after a timeout may have been applied the first time: every
        write compares a guard revision, so such a retry fails its compare and the caller
        re-plans from what is stored.
        """
        deadline = time.monotonic() + self.options.timeout
        failures: dict[str, str] = {}
        while True:
            with self._lock:
                i = self._at
            client = None
            try:
                client = self._client(i)
                return fn(client)
            except Exception as exc:
                kind, reason = _classify(exc)
                if kind == "compacted":
                    raise _Compacted(reason) from exc
                if kind == "fatal":
                    raise StoreUnavailable(f"etcd {self.where}: {what}: {reason}") from exc
                host, port = self.endpoints[i]
                failures[f"{host}:{port}"] = reason
                if client is not None:
                    self.fail(client)
                else:
                    with self._lock:
                        self._at = (i + 1) % len(self.endpoints)
            if time.monotonic() >= deadline:
                last = "; ".join(f"{ep}: {r}" for ep, r in failures.items())
                raise StoreUnavailable(
                    f"etcd {self.where}: {what}: no endpoint answered within "
                    f"{self.options.timeout:g}s ({last})")
            with self._lock:
                cycled = self._at == 0
            if cycled:  # every endpoint failed once: give the cluster a moment
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


@dataclass
class _Meta:
    """What a write compares against, and the stored keys behind the snapshot."""

    revision: int
    global_guard: int = 0  # mod revision of <prefix>/_guard, 0 while absent
    guards: dict[str, int] = field(default_factory=dict)  # cluster -> guard mod revision
    records: dict[str, bytes] = field(default_factory=dict)  # cluster -> stored record JSON
    pages: dict[str, dict[str, bytes]] = field(default_factory=dict)  # cluster -> key -> value
    entries: dict[str, dict[str, _Entry]] = field(default_factory=dict)  # cluster -> node
    # cluster -> a page's first node -> the entries of that page, as stored
    page_entries: dict[str, dict[str, dict[str, _Entry]]] = field(default_factory=dict)
    lease_keys: dict[Lease, str] = field(default_factory=dict)
    # cluster -> {(pool, node): (the lease as tied to an etcd lease, its ttl key)}
    ttl: dict[str, dict[tuple[str, str], tuple[Lease, str]]] = field(default_factory=dict)
    # cluster -> TTL leases etcd has expired: (the history entry stated for it, its ttl key)
    expired: dict[str, list[tuple[Released, str]]] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)  # clusters whose writers' lock is held


class _Lost(Exception):
    """A batch's compare failed: another writer got there first."""

    def __init__(self, progress: bool, cluster_moved: bool = True) -> None:
        self.progress = progress  # some earlier batch of the run landed
        # False: the cluster guard held, so the writer was of another cluster, claiming
        # ranges (the global guard moved): the cluster's lock would not order it
        self.cluster_moved = cluster_moved


class _Page(NamedTuple):
    value: str  # the page's JSON: {node: {"addresses": [...], "index": i, "routerId": ...}}
    addresses: dict[str, frozenset[Address]]  # node -> its addresses


def _split(record: ClusterRecord, stored: Mapping[str, _Entry] = {},
           stored_pages: Mapping[str, Mapping[str, _Entry]] = {}
           ) -> tuple[ClusterRecord, dict[str, _Page]] | None:
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
    pages: dict[str, _Page | None] = {}
    page: list[str] = []

    def unchanged(n: str, was: _Entry | None) -> bool:
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
        pages[page[0]] = _Page("{" + ", ".join(entries) + "}",
                               {n: frozenset(addresses[n]) for n in page})
        page.clear()

    for node in sorted(order):
        if page and (len(page) >= PAGE_MAX or zlib.crc32(node.encode()) % PAGE_NODES == 0):
            close()
        page.append(node)
    if page:
        close()
    return replace(record, hosts=(), router_ids=(), kept=()), pages


class _Entry(NamedTuple):
    """A node's entry as read from its page."""

    index: int
    addresses: list
    router_id: object  # Address or None
    kept: bool
    revision: int  # the page's mod revision: of two pages naming the node, the newer wins


def _join(record: ClusterRecord, nodes: dict[str, _Entry]) -> ClusterRecord:
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


class EtcdStore(Store):
    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self.prefix = options.etcd_prefix.rstrip("/")
        self.root = self.prefix + "/"
        self._etcd = _Etcd(parse_endpoints(url), options)
        self._watches: weakref.WeakSet[_EtcdWatch] = weakref.WeakSet()
        self._lost_races = 0

    @property
    def lost_races(self) -> int:
        """Writes of this store object that lost a compare-and-swap race to another writer
        and were re-planned (update, attach_ttl): a statistic, for benchmarks and logs."""
        return self._lost_races

    # --- keys ------------------------------------------------------------------------------

    def _key(self, cluster: str, *parts: str) -> str:
        return "/".join((self.prefix, cluster, *parts))

    def _lease_key(self, lease: Lease) -> str:
        return self._key(lease.cluster, "leases", lease.pool, lease.node)

    def _released_key(self, entry: Released) -> str:
        cidr = str(entry.cidr).replace("/", "-")
        return self._key(entry.cluster, "released", entry.pool, cidr)

    # --- reading ---------------------------------------------------------------------------

    def _range(self, prefix: str, first: _FirstPage | None = None) -> tuple[int, list]:
        """Every key under prefix at one revision, read in pages: (revision, kvs).
        first: the first page of prefix's range_op, read already (with a lock's take)."""

        def read(client: pyetcd.MultiEndpointEtcd3Client) -> tuple[int, list]:
            kvs: list = []
            end = prefix_range_end(prefix.encode())
            if first is not None:
                revision, resp = first
            else:
                resp = client.get_range_response(prefix.encode(), end, limit=PAGE)
                revision = resp.header.revision
            while True:
                kvs.extend(resp.kvs)
                if not resp.more:
                    return revision, kvs
                resp = client.get_range_response(resp.kvs[-1].key + b"\0", end, limit=PAGE,
                                                 revision=revision)

        while True:
            try:
                return self._etcd.call(f"read {prefix}", read)
            except _Compacted:
                first = None  # compacted between two pages: read again at the newest revision

    @staticmethod
    def _range_op(prefix: str) -> etcdrpc.RequestOp:
        """The first page of prefix's keys, as an operation of a transaction."""
        return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
            key=prefix.encode(), range_end=prefix_range_end(prefix.encode()), limit=PAGE))

    def _read(self, first: _FirstPage | None = None) -> tuple[Snapshot, _Meta]:
        revision, kvs = self._range(self.root, first)
        with gc_paused():
            return self._parse(revision, kvs)

    def _parse(self, revision: int, kvs: list) -> tuple[Snapshot, _Meta]:
        meta = _Meta(revision)
        records = {}
        nodes: dict[str, dict[str, _Entry]] = meta.entries
        leases: dict[str, list[Lease]] = {}
        history: dict[str, dict[tuple[str, object], Released]] = {}
        for kv in kvs:
            key = kv.key.decode()
            cluster, _, rest = key[len(self.root):].partition("/")
            kind = rest.split("/", 1)[0]
            try:
                if cluster == "_guard":
                    meta.global_guard = kv.mod_revision
                elif kind == "guard":
                    meta.guards[cluster] = kv.mod_revision
                elif kind == "record":
                    records[cluster] = record_from_json(kv.value)
                    meta.records[cluster] = kv.value
                elif kind == "nodes":
                    meta.pages.setdefault(cluster, {})[key] = kv.value
                    page = {}
                    for node, data in json.loads(kv.value).items():
                        texts, rid = data["addresses"], data["routerId"]
                        addresses = [parse_address(a) for a in texts]
                        page[node] = _Entry(
                            int(data["index"]), addresses,
                            # Most often the node's first address, parsed already.
                            addresses[0] if texts and rid == texts[0] else
                            None if rid is None else parse_address(rid),
                            data.get("kept", False) is True, kv.mod_revision)
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
                elif kind == "released":
                    data = json.loads(kv.value)
                    entry = Released(cluster, data["pool"], parse_cidr(data["cidr"]),
                                     data["seq"])
                    history.setdefault(cluster, {})[(entry.pool, entry.cidr)] = entry
                elif kind == "ttl":
                    lease = lease_from_json(kv.value)
                    meta.ttl.setdefault(cluster, {})[(lease.pool, lease.node)] = (lease, key)
                elif kind == "lock":
                    meta.locked.add(cluster)
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"etcd key {key}: malformed value ({_one_line(str(exc))})"
                                 ) from exc
        # A TTL lease whose key etcd deleted on expiry was released then: its history entry
        # is stated here (seq: this revision) and written by the cluster's next update.
        for cluster, tied in meta.ttl.items():
            live = set(leases.get(cluster, ()))
            for lease, key in tied.values():
                if lease not in live:
                    entry = Released(cluster, lease.pool, lease.cidr, revision)
                    meta.expired.setdefault(cluster, []).append((entry, key))
                    history.setdefault(cluster, {})[(entry.pool, entry.cidr)] = entry
        clusters = {
            name: ClusterState(
                _join(records[name], nodes.get(name, {})) if name in records else None,
                tuple(sorted(leases.get(name, ()))),
                tuple(sorted(history.get(name, {}).values())),
            )
            for name in sorted(set(records) | set(leases))
        }
        return Snapshot(clusters, revision + 1, revision), meta

    def snapshot(self) -> Snapshot:
        return self._read()[0]

    # --- writing ---------------------------------------------------------------------------

    def update(self, plan: Callable[[Snapshot], tuple[ClusterWrite | None, R]],
               cluster: str | None = None) -> R:
        """cluster, the one plan writes: its writers' lock is taken before the first read
        (see the top); without it, only once a race says that writers are queued."""
        lost = 0
        lock: _WritersLock | None = None  # the cluster's writers' lock
        claims: _WritersLock | None = None  # the store's claims lock (see the top)
        first: _FirstPage | None = None  # the next read's first page, read taking a lock
        waited_out: set[str] = set()  # locks waited for LOCK_WAIT in vain: not waited again

        def release_claims() -> None:
            nonlocal claims
            if claims is not None:
                claims.release()
                claims = None

        def take(key: str) -> _WritersLock | None:
            # Every lock is taken to read again: the transaction that takes it reads too.
            nonlocal first
            if key in waited_out:
                return None
            taken, first = _WritersLock.take(self._etcd, key, then=[self._range_op(self.root)])
            if taken is None:
                waited_out.add(key)
            return taken

        def take_cluster_lock(cluster: str) -> _WritersLock | None:
            # Never wait for a cluster's lock holding the claims lock: its holder may be
            # waiting for the claims lock.
            release_claims()
            return take(self._key(cluster, "lock"))

        try:
            if cluster is not None:
                lock = take_cluster_lock(cluster)
            while True:
                snapshot, meta = self._read(first)
                first = None
                write, result = plan(snapshot)
                if write is None:
                    return result
                if lock is None and write.cluster in meta.locked:
                    # Writers are queued: a write now would most likely lose to theirs.
                    lock = take_cluster_lock(write.cluster)
                    if lock is not None:
                        continue  # our turn: plan again from what they wrote
                try:
                    self._apply(write, meta, claimed=release_claims, lock=lock)
                    if lock is not None:
                        # The last batch deleted our key: its etcd lease, holding nothing
                        # now, expires on its own, without a revoke's round trip.
                        lock.abandon()
                        lock = None
                    return result
                except _Lost as exc:
                    self._lost_races += 1
                    lost = 1 if exc.progress else lost + 1
                    if lost >= MAX_CONFLICTS:
                        raise StoreConflict(
                            f"etcd {self._etcd.where}: cluster {write.cluster}: lost {lost} "
                            "races in a row against other writers; try again") from None
                    cluster_moved = exc.cluster_moved
                # Holding the lock that orders our rivals, go again at once: a race lost
                # then is to a writer that does not queue (it began before the lock was
                # taken, or waited it out), and a pause would keep the writers queued
                # behind us waiting.
                if not cluster_moved:
                    claims = claims or take(self.root + "_lock")
                    if claims is not None:
                        continue
                else:
                    lock = lock or take_cluster_lock(write.cluster)
                    if lock is not None:
                        continue
                # Jittered, growing pause: racing writers re-plan at different moments.
                time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** min(lost, 6))))
        except StoreUnavailable:
            # Letting go would wait out the timeout again, to say the same: the locks
            # lapse with their etcd leases.
            for held in (lock, claims):
                if held is not None:
                    held.abandon()
            lock = claims = None
            raise
        finally:
            release_claims()
            if lock is not None:
                lock.release()

    def _txn(self, compare: list, success: list, failure: list = ()) -> tuple[bool, object]:
        """One transaction: (whether the compares held, the revision it wrote if they did,
        else the failure operations' responses)."""

        def run(client: pyetcd.MultiEndpointEtcd3Client) -> tuple[bool, object]:
            ok, responses = client.transaction(compare=compare, success=success,
                                               failure=list(failure))
            # Every transaction here ends with a put, whose header carries its revision.
            return ok, responses[-1].response_put.header.revision if ok else responses

        return self._etcd.call("transaction", run)

    def _apply(self, write: ClusterWrite, meta: _Meta,
               claimed: Callable[[], None] = lambda: None,
               lock: _WritersLock | None = None) -> None:
        """Write the plan in batches (see the top); claimed() once no batch that claims
        ranges is left to write. lock: the cluster's writers' lock, which the last batch
        lets go, so that the next writer's turn begins as ours ends."""
        t = pyetcd.Transactions()
        guard = self._key(write.cluster, "guard")
        expected = meta.guards.get(write.cluster, 0)
        if write.record is None:
            # Forget: range deletes take the record, leases, history and guard at once, and
            # leave the writers queued behind us in the lock's queue.
            prefix = self._key(write.cluster, "").encode()
            queue = self._key(write.cluster, "lock", "").encode()
            ops = [t.delete(prefix, queue),
                   t.delete(prefix_range_end(queue), prefix_range_end(prefix))]
            ok, _ = self._txn([t.mod(guard) == expected],
                              ops + ([t.delete(lock.key)] if lock is not None else [])
                              + [t.put(self.root + "_guard", "")])
            if not ok:
                raise _Lost(progress=False)
            return
        expected_global = meta.global_guard
        with gc_paused():
            batches = self._batches(write, meta, t)
        last_claim = max((i for i, (claims, _) in enumerate(batches) if claims), default=-1)
        if last_claim < 0:
            claimed()
        if lock is not None and batches:
            batches[-1][1].append(t.delete(lock.key))
        for i, (claims, ops) in enumerate(batches):
            compare = [t.mod(guard) == expected]
            if claims:
                compare.append(t.mod(self.root + "_guard") == expected_global)
                ops = ops + [t.put(self.root + "_guard", "")]
            ok, got = self._txn(compare, ops + [t.put(guard, "")],
                                failure=[t.get(guard)] if claims else [])
            if not ok:
                # Which guard moved: the failure branch read ours back.
                held = claims and _mod_revision(got[0]) == expected
                raise _Lost(progress=i > 0, cluster_moved=not held)
            expected = got  # the revision the batch wrote
            if claims:
                expected_global = got
            if i == last_claim:
                claimed()

    def _page_ops(self, cluster: str, pages: dict[str, _Page | None], meta: _Meta,
                  t: pyetcd.Transactions) -> list[tuple[list, bool]]:
        """The operations bringing the stored node pages to `pages`, a page at a time:
        (its operations, whether they claim an address its nodes did not have)."""
        stored = meta.pages.get(cluster, {})
        had = meta.entries.get(cluster, {})
        units: list[tuple[list, bool]] = []
        for first, page in pages.items():
            key = self._key(cluster, "nodes", first)
            if page is not None and stored.get(key) != page.value.encode():
                claims = any(node not in had or not new <= set(had[node].addresses)
                             for node, new in page.addresses.items())
                units.append(([t.put(key, page.value)], claims))
        keys = {self._key(cluster, "nodes", first) for first in pages}
        units += [([t.delete(key)], False) for key in sorted(stored.keys() - keys)]
        return units

    def _batches(self, write: ClusterWrite, meta: _Meta,
                 t: pyetcd.Transactions) -> list[tuple[bool, list]]:
        """The write's operations cut into transactions, groups kept whole (see the top):
        (whether the batch claims ranges and so goes through the global guard, its ops)."""
        assert write.record is not None
        cluster = write.cluster
        tied = meta.ttl.get(cluster, {})
        split = _split(write.record, meta.entries.get(cluster, {}),
                       meta.page_entries.get(cluster, {}))
        small, pages = split if split is not None else (write.record, {})
        # (nodes, their operations, whether these claim ranges), written in this order:
        # the record and the node pages first, so that a lease always has its node's entry.
        groups: list[tuple[list[str], list, bool]] = []
        record = record_to_json(small)
        if meta.records.get(cluster) != record.encode():
            groups.append(([], [t.put(self._key(cluster, "record"), record)], True))
        groups += [([], ops, claims) for ops, claims in self._page_ops(cluster, pages, meta, t)]
        # History of TTL leases etcd expired: written, and their ttl keys dropped.
        for entry, key in meta.expired.get(cluster, ()):
            groups.append(([], [t.put(self._released_key(entry), _released_json(entry)),
                                t.delete(key)], False))

        deletes: dict[str, list[Lease]] = {}
        creates: dict[str, list[Lease]] = {}
        for x in write.delete:
            deletes.setdefault(x.node, []).append(x)
        for x in write.create:
            creates.setdefault(x.node, []).append(x)

        # Union-find over the nodes a CIDR moves between: a node joins every node that takes
        # a CIDR it frees. Every other node is a group of its own.
        parent: dict[str, str] = {}

        def find(node: str) -> str:
            parent.setdefault(node, node)
            while parent[node] != node:
                parent[node] = parent[parent[node]]
                node = parent[node]
            return node

        freed_by = {(x.pool, x.cidr): x.node for x in write.delete}
        for x in write.create:
            other = freed_by.get((x.pool, x.cidr))
            if other is not None:
                parent[find(x.node)] = find(other)
        members: dict[str, list[str]] = {}
        for node in sorted(deletes.keys() | creates.keys()):
            members.setdefault(find(node) if node in parent else node, []).append(node)

        history = {(x.pool, x.cidr): x for x in write.released}
        for nodes in members.values():
            ops: list = []
            for node in nodes:
                puts = [(self._lease_key(x), x) for x in creates.get(node, ())]
                put_keys = {key for key, _ in puts}
                for x in deletes.get(node, ()):
                    key = meta.lease_keys.get(x, self._lease_key(x))
                    # etcd refuses a delete and a put of one key in a transaction: the put
                    # (the node's new CIDR in the same pool) replaces the old lease anyway.
                    if key not in put_keys:
                        ops.append(t.delete(key))
                    if (x.pool, node) in tied:
                        ops.append(t.delete(tied[(x.pool, node)][1]))
                    entry = history.pop((x.pool, x.cidr), None)
                    if entry is not None:
                        ops.append(t.put(self._released_key(entry), _released_json(entry)))
                ops += [t.put(key, lease_to_json(x)) for key, x in puts]
            groups.append((nodes, ops, False))
        # History without a lease deleted in this write: no node to go with, any batch will do.
        groups += [([], [t.put(self._released_key(e), _released_json(e))], False)
                   for e in history.values()]

        batches: list[tuple[bool, list]] = []
        room = room_bytes = 0
        for nodes, ops, claims in groups:
            if len(ops) > BATCH_OPS:
                raise StoreError(
                    f"cluster {cluster}: node {nodes[0]} (with {len(nodes) - 1} others its "
                    f"CIDRs move between) needs {len(ops)} operations in one transaction, "
                    f"more than a transaction holds ({BATCH_OPS} beside the guards, etcd's "
                    f"--max-txn-ops {MAX_TXN_OPS})")
            size = sum(len(op.key) + len(getattr(op, "value", "")) for op in ops)
            if len(ops) > room or size > room_bytes:
                batches.append((False, []))
                room, room_bytes = BATCH_OPS, BATCH_BYTES
            if claims and not batches[-1][0]:
                batches[-1] = (True, batches[-1][1])
            batches[-1][1].extend(ops)
            room -= len(ops)
            room_bytes -= size
        return batches

    # --- TTL leases ------------------------------------------------------------------------

    def attach_ttl(self, cluster: str, node: str, ttl: int) -> TtlLease:
        """Tie a node's leases to a fresh etcd lease of ttl seconds (flannel-style nodes).

        The node's speaker calls keepalive() on the result more often than every ttl
        seconds; when it stops, etcd deletes the node's lease keys and the CIDRs are free
        (stated in the history at the next read, so that they are reused last). Any later
        allocate or release that rewrites the node's leases makes them permanent again.
        """
        if ttl < 1:
            raise InvalidInput("ttl", ttl, "must be at least 1 second")
        granted = self._etcd.call("grant a lease", lambda c: c.lease(ttl))
        t = pyetcd.Transactions()
        guard = self._key(cluster, "guard")
        for _ in range(MAX_CONFLICTS):
            snapshot, meta = self._read()
            state = snapshot.clusters.get(cluster)
            mine = [x for x in (state.leases if state else ()) if x.node == node]
            if not mine:
                self._etcd.call("revoke a lease", lambda c: c.revoke_lease(granted.id))
                raise InvalidInput("node", node, f"holds no lease in cluster {cluster}")
            ops = []
            for x in mine:
                ops.append(t.put(meta.lease_keys[x], lease_to_json(x), lease=granted.id))
                ops.append(t.put(self._key(cluster, "ttl", x.pool, x.node), lease_to_json(x)))
            ok, _ = self._txn([t.mod(guard) == meta.guards.get(cluster, 0)],
                              ops + [t.put(guard, "")])
            if ok:
                return TtlLease(self._etcd, granted.id, ttl, cluster, node)
            self._lost_races += 1
            time.sleep(random.uniform(0, 0.05))
        raise StoreConflict(f"etcd {self._etcd.where}: cluster {cluster}: could not tie node "
                            f"{node} to a lease: lost {MAX_CONFLICTS} races in a row")

    # --- watching --------------------------------------------------------------------------

    def watch(self, cluster: str, start_revision: int | None = None,
              known: Iterable[Lease] = ()) -> LeaseWatch:
        watch = _EtcdWatch(self, cluster, start_revision, known)
        self._watches.add(watch)
        return watch

    def close(self) -> None:
        # Watches first: a watch whose stream ends under it would otherwise reconnect.
        for watch in list(self._watches):
            watch.close()
        self._etcd.close()


def _mod_revision(got: list) -> int:
    """The mod revision of a key a transaction's get read, 0 when it is absent."""
    return got[0][1].mod_revision if got else 0


def _released_json(entry: Released) -> str:
    return json.dumps({"cluster": entry.cluster, "pool": entry.pool, "cidr": str(entry.cidr),
                       "seq": entry.seq}, sort_keys=True)


def _run_txn(client: pyetcd.MultiEndpointEtcd3Client,
             request: etcdrpc.TxnRequest) -> etcdrpc.TxnResponse:
    """A transaction built here, for operations pyetcd's own cannot hold (ranges with a
    limit, whose replies are left as etcd sent them)."""
    return client.kvstub.Txn(request, client.timeout, credentials=client.call_credentials,
                             metadata=client.metadata)


def _changed(client: pyetcd.MultiEndpointEtcd3Client, key: str, held: int,
             timeout: float) -> None:
    """Return once key is no longer the one created at revision held (its holder let it
    go, or its lease expired), or after timeout seconds.

    The watch starts from now, not from held: etcd delivers a watch that starts in the past
    only at its next sync of such watches, every 100 ms, and a holder writing its batches
    moves the store past any revision we could name. A release before the watch began
    sends no event, so the key is read again once the watch is in place.
    """
    events: queue.Queue = queue.Queue()
    watch_id = client.add_watch_callback(key, events.put)
    try:
        value, meta = client.get(key)
        if value is None or meta.mod_revision != held:
            return
        with contextlib.suppress(queue.Empty):
            events.get(timeout=timeout)
    finally:
        client.cancel_watch(watch_id)


class _WritersLock:
    """A writer's place in the queue of a lock: its key `<queue>/<etcd lease id>`, tied to
    that etcd lease of LOCK_TTL seconds, which a thread keeps alive from the moment the key
    is created (see the top). The writer whose key was created first holds the lock; each
    of the others waits for the key created just before its own to go, so that a release
    wakes one writer, and it holds the lock without another write."""

    def __init__(self, etcd: _Etcd, key: str, lease_id: int) -> None:
        self._etcd = etcd
        self.key = key
        self._lease_id = lease_id
        self._done = threading.Event()
        self._keepalive = threading.Thread(target=self._refresh, daemon=True,
                                           name=f"netplan lock {key}")
        self._keepalive.start()

    @classmethod
    def take(cls, etcd: _Etcd, queue: str, then: list[etcdrpc.RequestOp] = ()
             ) -> tuple[_WritersLock | None, _FirstPage | None]:
        """Wait for the lock; None after LOCK_WAIT seconds without it (the caller goes on
        without: the lock orders writers, the compare-and-swap keeps them correct).
        then: range operations run with whatever finds us at the head of the queue (the
        transaction that joins it empty, or the read after a wait), so that a read that
        needs the lock saves a round trip; their first one's (revision, reply) comes with
        the lock."""
        began = time.monotonic()
        lease_id = etcd.call("grant a lease", lambda c: c.lease(LOCK_TTL)).id
        key = f"{queue}/{lease_id:x}"
        start = (queue + "/").encode()
        end = prefix_range_end(start)
        join = etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
            key=key.encode(), value=f"{os.getpid()}@{os.uname().nodename}".encode(),
            lease=lease_id))
        request = etcdrpc.TxnRequest(
            compare=[(pyetcd.Transactions().version(start, range_end=end) == 0
                      ).build_message()],  # no key in the queue
            success=[join, *then],
            failure=[join, etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
                key=start, range_end=end))])

        reply = etcd.call(f"take the lock {queue}", functools.partial(_run_txn, request=request))
        mine = reply.header.revision  # our key's create revision
        lock = cls(etcd, key, lease_id)
        if reply.succeeded:
            return lock, (mine, reply.responses[1].response_range) if then else None
        try:
            held, first = lock._wait(queue, reply.responses[1].response_range.kvs, mine,
                                     began, then)
            if held:
                return lock, first
            lock.release()
            return None, None
        except BaseException:
            lock.abandon()  # our key lapses with its etcd lease
            raise

    def _wait(self, queue: str, kvs: list, mine: int, began: float,
              then: list[etcdrpc.RequestOp]) -> tuple[bool, _FirstPage | None]:
        """Until no key created before ours is left in the queue (True, and the first of
        then's replies, read with the queue that said so), or LOCK_WAIT seconds (False).
        kvs: the queue's keys as last read."""
        start = (queue + "/").encode()
        # Read-only: etcd answers it without a write.
        read = etcdrpc.TxnRequest(success=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
            key=start, range_end=prefix_range_end(start))), *then])
        said, first = False, None
        while True:
            ahead = sorted((kv for kv in kvs if kv.create_revision < mine),
                           key=lambda kv: kv.create_revision)
            if not ahead:
                return True, first
            now = time.monotonic()
            left = began + LOCK_WAIT - now
            if left <= 0:
                log.warning("%s: waited %gs; writing without the lock", queue, LOCK_WAIT)
                return False, None
            if not said and now - began > LOCK_SAY:
                # Turns are short; a long wait is a big run, or a holder that died (its key
                # lapses within LOCK_TTL seconds): the user should know why nothing moves.
                log.warning("%s: waiting for the writer that holds it (%s)", queue,
                            ahead[0].value.decode(errors="replace"))
                said = True
            before = ahead[-1]  # the key created just before ours
            self._etcd.call(f"wait for the lock {queue}", functools.partial(
                _changed, key=before.key.decode(), held=before.mod_revision,
                timeout=min(left, LOCK_TTL if said else LOCK_SAY)))
            reply = self._etcd.call(f"read the lock {queue}",
                                    functools.partial(_run_txn, request=read))
            kvs = reply.responses[0].response_range.kvs
            if then:
                first = reply.header.revision, reply.responses[1].response_range

    def _refresh(self) -> None:
        while not self._done.wait(LOCK_TTL / 3):
            try:
                self._etcd.call("keep the lock alive",
                                lambda c: list(c.refresh_lease(self._lease_id)))
            except StoreError:
                return  # the lock may lapse: writes stay compare-and-swapped all the same

    def abandon(self) -> None:
        """Stop keeping our key alive: it lapses within LOCK_TTL seconds."""
        self._done.set()

    def release(self) -> None:
        self._done.set()
        try:
            self._etcd.call(f"release the lock {self.key}",
                            lambda c: c.revoke_lease(self._lease_id))
        except StoreError as exc:  # it lapses after LOCK_TTL seconds
            log.warning("%s", exc)


@dataclass
class TtlLease:
    """An etcd lease holding one node's lease keys."""

    _etcd: _Etcd
    id: int
    ttl: int
    cluster: str
    node: str

    def keepalive(self) -> int:
        """Refresh the lease; the seconds it now has. StoreError once etcd expired it."""
        replies = self._etcd.call("keep a lease alive",
                                  lambda c: list(c.refresh_lease(self.id)))
        left = replies[-1].TTL if replies else 0
        if left <= 0:
            raise StoreError(f"etcd lease {self.id:x} of node {self.node} in cluster "
                             f"{self.cluster} has expired: its CIDRs are released")
        return left


_CLOSED = object()


class _EtcdWatch(ResyncingWatch):
    """etcd watch of <prefix>/<cluster>/leases/, resumed from the last revision on failure.

    pyetcd calls back from its stream thread with every response, or with the error that
    ended the stream; both go through one queue, so an error comes after every event
    received before it, and a resume revision always follows a complete revision (etcd
    sends each revision's events in one response).
    """

    _history_lost = "compacted away"

    def __init__(self, store: EtcdStore, cluster: str, start_revision: int | None,
                 known: Iterable[Lease]) -> None:
        self._store = store
        self._cluster = cluster
        self._prefix = store._key(cluster, "leases", "")
        self._queue: queue.Queue = queue.Queue()
        self._pending: deque[LeaseEvent] = deque()
        self._client = None
        self._watch_id = None
        self._closed = False
        self._lock = threading.Lock()
        # What the consumer holds once it took every event so far: key -> lease.
        self._leases: dict[str, Lease] = {store._lease_key(x): x for x in known}
        if start_revision is None:
            revision, now = self._listing()
            self._leases = now
            self._pending.extend(LeaseEvent("put", x, revision) for x in now.values())
            self._next = revision + 1
        else:
            self._next = start_revision
        self._subscribe()

    def _listing(self) -> tuple[int, dict[str, Lease]]:
        revision, kvs = self._store._range(self._prefix)
        return revision, {kv.key.decode(): lease_from_json(kv.value) for kv in kvs}

    def _subscribe(self) -> None:
        def add(client):
            return client, client.add_watch_prefix_callback(
                self._prefix, self._queue.put, start_revision=self._next, prev_kv=True)

        while True:
            try:
                client, watch_id = self._store._etcd.call(f"watch {self._prefix}", add)
            except _Compacted:
                self._resync()
                continue
            with self._lock:
                self._client, self._watch_id = client, watch_id
                if self._closed:
                    self._cancel()
            return

    def _cancel(self) -> None:
        if self._client is not None:
            try:
                self._client.cancel_watch(self._watch_id)
            except (grpc.RpcError, etcd_errors.Etcd3Exception):
                pass  # the stream is gone already: nothing left to cancel
            self._client = None

    def __next__(self) -> LeaseEvent:
        while True:
            if self._closed:
                raise StopIteration
            if self._pending:
                return self._pending.popleft()
            item = self._queue.get()
            if item is _CLOSED:
                continue
            if item is None or isinstance(item, Exception):
                try:
                    self._resume(item)
                except StoreError:
                    self.close()
                    raise
                continue
            for event in item.events:
                self._take(event)

    def _resume(self, error: Exception | None) -> None:
        """The stream ended: go on from self._next, on another endpoint if it failed.

        No error: the stream's client was closed under it (another watch on the same
        channel failed over); a fresh subscription goes on where it stopped.
        """
        with self._lock:
            client, self._client = self._client, None
        if error is not None:
            kind, reason = _classify(error)
            if kind == "fatal":
                raise StoreUnavailable(
                    f"etcd {self._store._etcd.where}: watch {self._prefix}: {reason}")
            if kind == "compacted":
                self._resync()
            elif client is not None:
                self._store._etcd.fail(client)
        self._subscribe()

    def _take(self, event) -> None:
        key = event.key.decode()
        revision = event.mod_revision  # of a delete event too: the deletion's revision
        old = self._leases.pop(key, None)
        if old is None and event.prev_value:  # the key's value before (asked for: prev_kv)
            old = lease_from_json(event.prev_value)
        if isinstance(event, PutEvent):
            lease = lease_from_json(event.value)
            if old is not None and old != lease:  # the node's lease moved within its pool
                self._pending.append(LeaseEvent("delete", old, revision))
            if old != lease:  # a TTL tie rewrites the key with the same lease: no change
                self._pending.append(LeaseEvent("put", lease, revision))
            self._leases[key] = lease
        elif old is not None:
            self._pending.append(LeaseEvent("delete", old, revision))
        self._next = max(self._next, revision + 1)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cancel()
        self._queue.put(_CLOSED)
