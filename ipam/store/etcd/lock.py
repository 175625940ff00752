"""The writers' lock: a queue in the manner of etcd's own mutex.

Writers of a cluster take turns on its lock, `<cluster>/lock/`: each writer creates a key
of its own, `<queue>/<etcd lease id>` ("pid@host"), tied to an etcd lease of LOCK_TTL
seconds that a thread keeps alive from the moment the key exists. The first key created
holds the lock; each of the others waits for the key created just before its own to go, so
that a release wakes one writer, and that writer holds the lock with no write of its own.
A run's last batch deletes its key (store.py), so the next turn begins as this one ends.

The lock orders writers, it does not make them correct: every batch is still compared and
swapped, so a writer that waited LOCK_WAIT seconds goes on without it, and a writer that
dies leaves the queue when its etcd lease expires. The claims lock, `<prefix>/_lock/`, is
the same queue (store.py says when a run takes it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence

from ipam.errors import StoreError
from ipam.store.etcd.kv import KV, Compare, Put, Range, RangeReply, prefix_end

log = logging.getLogger("ipam.store.etcd")

# How long the lock outlives a writer that dies holding it, and how long a writer waits
# for it before it goes on without it.
LOCK_TTL = 10
LOCK_WAIT = 60
LOCK_SAY = 2.0  # a wait this long is said on stderr

# A range read with whatever finds a writer at the head of the queue:
# (the revision it was read at, its first page).
FirstPage = tuple[int, RangeReply]


def _changed(kv: KV, key: str, held: int, timeout: float) -> None:
    """Return once key is no longer the one created at revision held (its holder let it
    go, or its lease expired), or after timeout seconds.

    The watch starts from now, not from held: etcd delivers a watch that starts in the past
    only at its next sync of such watches, every 100 ms, and a holder writing its batches
    moves the store past any revision we could name. A release before the watch began
    sends no event, so the key is read again once the watch is in place.
    """
    events: queue.Queue = queue.Queue()
    cancel = kv.watch(key, None, 0, events.put)
    try:
        _, now = kv.range(key)
        if not now.kvs or now.kvs[0].mod_revision != held:
            return
        with contextlib.suppress(queue.Empty):
            events.get(timeout=timeout)
    finally:
        cancel()


class WritersLock:
    """A writer's place in the queue of a lock (see the top)."""

    def __init__(self, kv: KV, key: str, lease_id: int) -> None:
        self._kv = kv
        self.key = key
        self._lease_id = lease_id
        self._done = threading.Event()
        self._keepalive = threading.Thread(target=self._refresh, daemon=True,
                                           name=f"netplan lock {key}")
        self._keepalive.start()

    @classmethod
    def take(cls, kv: KV, queue_key: str, then: Sequence[Range] = ()
             ) -> tuple[WritersLock | None, FirstPage | None]:
        """Wait for the lock; None after LOCK_WAIT seconds without it (the caller goes on
        without: the lock orders writers, the compare-and-swap keeps them correct).
        then: range operations run with whatever finds us at the head of the queue (the
        transaction that joins it empty, or the read after a wait), so that a read that
        needs the lock saves a round trip; their first one's (revision, reply) comes with
        the lock."""
        began = time.monotonic()
        lease_id = kv.grant(LOCK_TTL)
        key = f"{queue_key}/{lease_id:x}"
        start = queue_key + "/"
        everyone = Range(start, prefix_end(start))
        join = Put(key, f"{os.getpid()}@{os.uname().nodename}", lease_id)
        reply = kv.txn([Compare(start, "version", 0, prefix_end(start))],  # an empty queue
                       [join, *then], [join, everyone])
        mine = reply.revision  # our key's create revision
        lock = cls(kv, key, lease_id)
        if reply.succeeded:
            return lock, (mine, reply.replies[1]) if then else None
        try:
            held, first = lock._wait(queue_key, reply.replies[1].kvs, mine, began, then)
            if held:
                return lock, first
            lock.release()
            return None, None
        except BaseException:
            lock.abandon()  # our key lapses with its etcd lease
            raise

    def _wait(self, queue_key: str, kvs: Sequence, mine: int, began: float,
              then: Sequence[Range]) -> tuple[bool, FirstPage | None]:
        """Until no key created before ours is left in the queue (True, and the first of
        then's replies, read with the queue that said so), or LOCK_WAIT seconds (False).
        kvs: the queue's keys as last read."""
        start = queue_key + "/"
        read = [Range(start, prefix_end(start)), *then]
        said, first = False, None
        while True:
            ahead = sorted((kv for kv in kvs if kv.create_revision < mine),
                           key=lambda kv: kv.create_revision)
            if not ahead:
                return True, first
            now = time.monotonic()
            left = began + LOCK_WAIT - now
            if left <= 0:
                log.warning("%s: waited %gs; writing without the lock", queue_key, LOCK_WAIT)
                return False, None
            if not said and now - began > LOCK_SAY:
                # Turns are short; a long wait is a big run, or a holder that died (its key
                # lapses within LOCK_TTL seconds): the user should know why nothing moves.
                log.warning("%s: waiting for the writer that holds it (%s)", queue_key,
                            ahead[0].value.decode(errors="replace"))
                said = True
            before = ahead[-1]  # the key created just before ours
            _changed(self._kv, before.key.decode(), before.mod_revision,
                     min(left, LOCK_TTL if said else LOCK_SAY))
            # Read-only: etcd answers it without a write.
            reply = self._kv.txn([], read)
            kvs = reply.replies[0].kvs
            if then:
                first = reply.revision, reply.replies[1]

    def _refresh(self) -> None:
        while not self._done.wait(LOCK_TTL / 3):
            try:
                self._kv.refresh(self._lease_id)
            except StoreError:
                return  # the lock may lapse: writes stay compare-and-swapped all the same

    def abandon(self) -> None:
        """Stop keeping our key alive: it lapses within LOCK_TTL seconds."""
        self._done.set()

    def release(self) -> None:
        self._done.set()
        try:
            self._kv.revoke(self._lease_id)
        except StoreError as exc:  # it lapses after LOCK_TTL seconds
            log.warning("%s", exc)
