"""The key-value interface the etcd store is written against: ranges, transactions with
compares, watches and leases, in etcd's own terms but in neutral values.

Two implementations: `grpc_kv.GrpcKV`, the only code that imports pyetcd or grpc, talks to
a real etcd; `memory_kv.MemoryKV` keeps revisions, compares, leases and watch history in
the process, so that the store's logic is tested in milliseconds (httpx's MockTransport).

Every call either answers or raises: `Compacted` when the revision asked for is older than
the store's compaction, `StoreUnavailable` when no endpoint answered within the timeout or
etcd refused the request for good (one line: `etcd WHERE: what: reason`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, Protocol

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
PAGE = 10_000  # keys per range request: 10,000 leases are some 2 MiB (fewer round trips)


class Compacted(Exception):
    """The revision asked for is older than etcd's compaction."""


class StreamLost(Exception):
    """A watch's stream ended on a failure worth retrying (an endpoint went away): subscribe
    again from the revision after the last one delivered."""


class Put(NamedTuple):
    key: str
    value: str | bytes
    lease: int = 0  # the etcd lease the key lives and dies with; 0: none


class Delete(NamedTuple):
    key: str
    range_end: str | None = None  # delete every key in [key, range_end) instead of one


class Range(NamedTuple):
    key: str
    range_end: str | None = None  # every key in [key, range_end) instead of one
    limit: int = 0  # at most this many keys, the lowest first; 0: all


class Compare(NamedTuple):
    """`target` of key (or of every key in [key, range_end)) equals value; 0 for a key
    that does not exist."""

    key: str
    target: Literal["mod", "version"]  # the key's mod revision, or its version
    value: int
    range_end: str | None = None


Op = Put | Delete | Range


class KeyValue(Protocol):
    """A stored key as etcd returns it (etcd's own protobuf message has these fields)."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


class RangeReply(NamedTuple):
    kvs: Sequence[KeyValue]
    more: bool  # keys past the limit are left


class TxnReply(NamedTuple):
    succeeded: bool  # the compares held: the success operations ran, else the failure ones
    revision: int  # the store's revision after the transaction
    replies: Sequence[RangeReply | None]  # per operation run: a Range's reply, else None


class WatchEvent(NamedTuple):
    kind: Literal["put", "delete"]
    key: bytes
    value: bytes  # empty for a delete
    mod_revision: int  # of a delete: the deletion's revision
    prev_value: bytes | None  # the key's value before the change, None if it had none


# Called with every revision's events as one list, in revision order; or, once, with the
# exception that ended the watch (Compacted, StreamLost or StoreUnavailable).
WatchCallback = Callable[[list[WatchEvent] | Exception], None]


def prefix_end(prefix: str) -> str:
    """The range end that makes [prefix, end) every key starting with prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def read_all(kv: KV, prefix: str, first: tuple[int, RangeReply] | None = None
             ) -> tuple[int, list[KeyValue]]:
    """Every key under prefix at one revision, read in pages of PAGE keys: (revision, kvs).
    first: the first page (limit PAGE) and its revision, read already (with a lock)."""
    end = prefix_end(prefix)
    while True:
        try:
            revision, reply = first or kv.range(prefix, end, limit=PAGE)
            kvs = list(reply.kvs)
            while reply.more:
                _, reply = kv.range(kvs[-1].key.decode() + "\0", end, limit=PAGE,
                                    revision=revision)
                kvs.extend(reply.kvs)
            return revision, kvs
        except Compacted:
            first = None  # compacted between two pages: read again at the newest revision


class KV(ABC):
    where: str  # the endpoints, for messages
    max_txn_ops: int = MAX_TXN_OPS  # operations a transaction may hold (etcd --max-txn-ops)

    @abstractmethod
    def range(self, key: str, range_end: str | None = None, *, limit: int = 0,
              revision: int = 0) -> tuple[int, RangeReply]:
        """(the store's revision the read was made at, the keys); revision 0: the newest."""

    @abstractmethod
    def txn(self, compare: Sequence[Compare], success: Sequence[Op],
            failure: Sequence[Op] = ()) -> TxnReply:
        """One transaction of at most MAX_TXN_OPS operations a branch."""

    @abstractmethod
    def grant(self, ttl: int) -> int:
        """A new etcd lease of ttl seconds: its id."""

    @abstractmethod
    def refresh(self, lease_id: int) -> int:
        """Keep a lease alive: the seconds it now has, 0 or less once it has expired."""

    @abstractmethod
    def revoke(self, lease_id: int) -> None:
        """End a lease now, deleting its keys."""

    @abstractmethod
    def watch(self, key: str, range_end: str | None, start_revision: int,
              callback: WatchCallback) -> Callable[[], None]:
        """Deliver every change of [key, range_end) from start_revision on (0: from now) to
        callback, with each key's previous value; the function returned cancels the watch.
        Raises Compacted when start_revision is compacted away."""

    def close(self) -> None:  # noqa: B027 - implementations without connections keep it
        """Release connections."""
