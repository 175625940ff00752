"""The etcd store: leases as keys (layout.py), every write a compare-and-swap transaction.

A run reads everything at one revision, plans, and writes the plan in batches (batches.py).
Every batch compares the cluster guard's mod revision with the one the run last saw (read,
or set by its own previous batch) and bumps it, so a batch of another writer of the cluster
in between makes ours fail; the run then re-reads and re-plans. The planner is idempotent:
batches already written are part of the fresh state, and the rest is planned again on top
of them. A batch that claims ranges also compares and bumps the global guard (the run tracks
its mod revision like the cluster guard's): two clusters racing for one range both plan
without the other, and only the first claim written lands; the other re-plans, sees the
first cluster and reports the conflict.

Writers of a cluster take turns on its writers' lock (lock.py). `allocate` and `release`
name their cluster and queue before they read: when the queue is empty, the transaction
that creates their key reads the store too (and so does every lock a run takes: it always
reads again). The run's last batch deletes its key, and a run that writes nothing lets it
go at once, so the next writer's turn begins as this one's ends. A caller that names no
cluster queues once a race says writers are queued: after it lost one, or when its read
finds a key in the queue. Without the lock, eight allocators starting together re-read and
re-plan in turn after each lost race, and most of their work is thrown away; with it they
take turns. An unraced run pays for it a lease grant and a put in the transaction that
reads: some 1.5 ms on a local etcd.

Clusters race too: every batch that claims ranges goes through the global guard, so writers
of different clusters that start together lose to each other's claims (the cluster's lock
does not order them). A batch that claims reads its cluster guard back when it fails: if
that held, the winner was another cluster, and the run takes the store's claims lock before
it reads again. It keeps it only until its last claiming batch is written (the record and
node pages go first), so that the lease batches of different clusters still run side by
side. A run never waits for its cluster's lock while it holds the claims lock (it lets that
go first), so two runs never wait for each other.
"""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable, Iterable

from ipam.allocation import Lease
from ipam.errors import InvalidInput, StoreConflict, StoreUnavailable
from ipam.gcpause import gc_paused
from ipam.state import ClusterWrite, Snapshot
from ipam.store.base import LeaseWatch, R, SharedStore, Store, StoreOptions, TtlStore
from ipam.store.etcd import layout
from ipam.store.etcd.batches import Batch, forget_ops, plan_batches
from ipam.store.etcd.kv import KV, PAGE, Compare, Delete, Op, Put, Range, prefix_end, read_all
from ipam.store.etcd.lock import FirstPage, WritersLock
from ipam.store.etcd.ttl import MAX_CONFLICTS, TtlLease, attach
from ipam.store.etcd.watch import EtcdWatch


class _Lost(Exception):
    """A batch's compare failed: another writer got there first."""

    def __init__(self, progress: bool, cluster_moved: bool = True) -> None:
        self.progress = progress  # some earlier batch of the run landed
        # False: the cluster guard held, so the writer was of another cluster, claiming
        # ranges (the global guard moved): the cluster's lock would not order it
        self.cluster_moved = cluster_moved


class _Run:
    """One update: the locks it holds, taken and let go as the races it meets say."""

    def __init__(self, store: EtcdStore) -> None:
        self._store = store
        self.lock: WritersLock | None = None  # the cluster's writers' lock
        self.claims: WritersLock | None = None  # the store's claims lock
        self.first: FirstPage | None = None  # the next read's first page, read with a lock
        self._waited_out: set[str] = set()  # locks waited for in vain: not waited again

    def _take(self, key: str) -> WritersLock | None:
        # Every lock is taken to read again: the transaction that takes it reads too.
        if key in self._waited_out:
            return None
        root = self._store.keys.root
        taken, self.first = WritersLock.take(self._store.kv, key,
                                             then=[Range(root, prefix_end(root), PAGE)])
        if taken is None:
            self._waited_out.add(key)
        return taken

    def take_cluster_lock(self, cluster: str) -> bool:
        """Queue on the cluster's lock unless held; whether we now hold it."""
        if self.lock is None:
            # Never wait for a cluster's lock holding the claims lock: its holder may be
            # waiting for the claims lock.
            self.release_claims()
            self.lock = self._take(self._store.keys.lock(cluster))
        return self.lock is not None

    def take_claims_lock(self) -> bool:
        if self.claims is None:
            self.claims = self._take(self._store.keys.claims_lock)
        return self.claims is not None

    def release_claims(self) -> None:
        if self.claims is not None:
            self.claims.release()
            self.claims = None

    def handed_over(self) -> None:
        """The last batch deleted our key: its etcd lease, holding nothing now, expires on
        its own, without a revoke's round trip."""
        if self.lock is not None:
            self.lock.abandon()
            self.lock = None

    def lapse(self) -> None:
        """The store is gone: letting go would wait out the timeout again, to say the same;
        the locks lapse with their etcd leases."""
        for held in (self.lock, self.claims):
            if held is not None:
                held.abandon()
        self.lock = self.claims = None

    def end(self) -> None:
        self.release_claims()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class EtcdStore(Store, SharedStore, TtlStore):
    def __init__(self, url: str, options: StoreOptions, kv: KV | None = None) -> None:
        """url: etcd://HOST:PORT[,...]; kv: the key-value layer to use instead of the
        endpoints the url names (tests: memory_kv.MemoryKV)."""
        self.url = url
        self.keys = layout.Keys(options.etcd_prefix)
        if bool(options.etcd_cert) != bool(options.etcd_key):
            raise InvalidInput("--etcd-cert" if options.etcd_cert else "--etcd-key",
                               options.etcd_cert or options.etcd_key,
                               "needs --etcd-cert and --etcd-key together")
        if options.etcd_user and options.etcd_password is None:
            raise InvalidInput("--etcd-user", options.etcd_user,
                               "needs the password in $NETPLAN_ETCD_PASSWORD")
        if kv is None:
            from ipam.store.etcd.grpc_kv import GrpcKV
            from ipam.store.url import parse_store_url

            kv = GrpcKV(parse_store_url(url).endpoints, timeout=options.timeout,
                        secure=options.etcd_tls, ca=options.etcd_ca, cert=options.etcd_cert,
                        key=options.etcd_key, user=options.etcd_user,
                        password=options.etcd_password)
        self.kv = kv
        self._tls = options.etcd_tls
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()
        self._lost_races = 0

    def location(self) -> str:
        # TLS the scheme asked for (https://) goes with the URL: the options do not say it.
        return "etcd+https://" + self.url.removeprefix("etcd://") if self._tls else self.url

    @property
    def lost_races(self) -> int:
        """Writes of this store object that lost a compare-and-swap race to another writer
        and were re-planned (update, attach_ttl): a statistic, for benchmarks and logs."""
        return self._lost_races

    # --- reading ---------------------------------------------------------------------------

    def _read(self, first: FirstPage | None = None) -> tuple[Snapshot, layout.Meta]:
        revision, kvs = read_all(self.kv, self.keys.root, first)
        with gc_paused():
            return layout.parse(self.keys, revision, kvs)

    def snapshot(self) -> Snapshot:
        return self._read()[0]

    # --- writing ---------------------------------------------------------------------------

    def update(self, plan: Callable[[Snapshot], tuple[ClusterWrite | None, R]],
               cluster: str | None = None) -> R:
        """cluster, the one plan writes: its writers' lock is taken before the first read
        (see the top); without it, only once a race says that writers are queued."""
        run = _Run(self)
        lost = 0
        try:
            if cluster is not None:
                run.take_cluster_lock(cluster)
            while True:
                snapshot, meta = self._read(run.first)
                run.first = None
                write, result = plan(snapshot)
                if write is None:
                    return result
                if run.lock is None and write.cluster in meta.locked:
                    # Writers are queued: a write now would most likely lose to theirs.
                    if run.take_cluster_lock(write.cluster):
                        continue  # our turn: plan again from what they wrote
                try:
                    self._apply(write, meta, run)
                    return result
                except _Lost as exc:
                    self._lost_races += 1
                    lost = 1 if exc.progress else lost + 1
                    if lost >= MAX_CONFLICTS:
                        raise StoreConflict(
                            f"etcd {self.kv.where}: cluster {write.cluster}: lost {lost} "
                            "races in a row against other writers; try again") from None
                    cluster_moved = exc.cluster_moved
                # Holding the lock that orders our rivals, go again at once: a race lost
                # then is to a writer that does not queue (it began before the lock was
                # taken, or waited it out), and a pause would keep the writers queued
                # behind us waiting.
                if run.take_cluster_lock(write.cluster) if cluster_moved else \
                        run.take_claims_lock():
                    continue
                # Jittered, growing pause: racing writers re-plan at different moments.
                time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** min(lost, 6))))
        except StoreUnavailable:
            run.lapse()
            raise
        finally:
            run.end()

    def _apply(self, write: ClusterWrite, meta: layout.Meta, run: _Run) -> None:
        """Write the plan in batches; the claims lock goes once no batch that claims ranges
        is left to write, and the cluster's lock with the last batch."""
        keys = self.keys
        guard = keys.guard(write.cluster)
        expected = meta.guards.get(write.cluster, 0)
        let_go: list[Op] = [Delete(run.lock.key)] if run.lock is not None else []
        if write.record is None:
            reply = self.kv.txn([Compare(guard, "mod", expected)],
                                [*forget_ops(keys, write.cluster), *let_go,
                                 Put(keys.global_guard, "")])
            if not reply.succeeded:
                raise _Lost(progress=False)
            run.handed_over()
            return
        expected_global = meta.global_guard
        with gc_paused():
            batches = plan_batches(keys, write, meta, self.kv.max_txn_ops)
        if not batches:
            return  # nothing to write: run.end() lets the locks go
        last_claim = max((i for i, b in enumerate(batches) if b.claims), default=-1)
        if last_claim < 0:
            run.release_claims()
        batches[-1] = Batch(batches[-1].claims, batches[-1].ops + let_go)
        for i, (claims, ops) in enumerate(batches):
            compare = [Compare(guard, "mod", expected)]
            if claims:
                compare.append(Compare(keys.global_guard, "mod", expected_global))
                ops = [*ops, Put(keys.global_guard, "")]
            reply = self.kv.txn(compare, [*ops, Put(guard, "")],
                                [Range(guard)] if claims else [])
            if not reply.succeeded:
                # Which guard moved: the failure branch read ours back.
                got = reply.replies[0].kvs if claims else ()
                held = claims and (got[0].mod_revision if got else 0) == expected
                raise _Lost(progress=i > 0, cluster_moved=not held)
            expected = reply.revision  # the revision the batch wrote
            if claims:
                expected_global = reply.revision
            if i == last_claim:
                run.release_claims()
        run.handed_over()

    # --- TTL leases and watching -----------------------------------------------------------

    def attach_ttl(self, cluster: str, node: str, ttl: int) -> TtlLease:
        """Tie a node's leases to a fresh etcd lease of ttl seconds (ttl.py): the node's
        speaker calls keepalive() on the result more often than every ttl seconds."""
        tie, lost = attach(self.kv, self.keys, self._read, cluster, node, ttl)
        self._lost_races += lost
        return tie

    def watch(self, cluster: str, start_revision: int | None = None,
              known: Iterable[Lease] = (), node: str | None = None) -> LeaseWatch:
        watch = EtcdWatch(self.kv, self.keys, cluster, node, start_revision, known)
        self._watches.add(watch)
        return watch

    def close(self) -> None:
        # Watches first: a watch whose stream ends under it would otherwise reconnect.
        for watch in list(self._watches):
            watch.close()
        self.kv.close()
