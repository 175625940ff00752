"""The Store interface: a snapshot to read, and one atomic read-plan-write step.

Like Calico's IPAM, the pure logic never talks to the datastore: a store hands the planner a
snapshot inside its own transaction (SQLite) or at a revision (etcd), and applies what the
planner decided as one write, compare-and-swap where the back end needs it, re-running the
planner from fresh state when another writer got there first.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from ipam.allocation import Lease
from ipam.state import ClusterWrite, Snapshot

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Connection settings that only some back ends use (etcd)."""

    etcd_prefix: str = "/netplan"
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    # TLS asked for by the URL's scheme (https://, etcd+https://), with the system's roots
    # when there is no etcd_ca; the TLS files alone ask for it too.
    etcd_tls: bool = False
    etcd_user: str | None = None
    etcd_password: str | None = None  # from $NETPLAN_ETCD_PASSWORD, never printed
    timeout: float = 5.0  # seconds to wait for an answer before the store counts as down


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    """One lease change of a cluster: `put` (the lease exists from now on) or `delete`."""

    kind: Literal["put", "delete"]
    lease: Lease
    revision: int  # the store revision of the change; several changes may share one
    # True when the change was not seen as such but derived by comparing a fresh snapshot
    # with what the watch had delivered (the store no longer held the history to replay).
    resync: bool = False


class LeaseWatch(ABC):
    """An iterator of LeaseEvents that blocks until the next change; close() ends it.

    close() may be called from another thread: a blocked `next()` then raises StopIteration.
    """

    def __iter__(self) -> Iterator[LeaseEvent]:
        return self

    @abstractmethod
    def __next__(self) -> LeaseEvent: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> LeaseWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ResyncingWatch(LeaseWatch):
    """A watch of a store that may discard its history (etcd compacts it, SQLite trims its
    log): it keeps what the consumer holds, and makes up for a lost stretch from a snapshot.
    Subclasses set _cluster, _leases, _pending and _next, and read the snapshot (_listing)."""

    _cluster: str
    _leases: dict  # key -> lease: what the consumer holds once it took every event so far
    _pending: deque[LeaseEvent]
    _next: int  # the revision of the next change to deliver
    _history_lost = "discarded"  # how the store lost the history, for the warning

    @abstractmethod
    def _listing(self) -> tuple[int, dict]:
        """(revision, key -> lease) of the cluster's leases now."""

    def _resync(self) -> None:
        """The store no longer holds the changes from self._next on: deliver the events that
        turn what the consumer holds into a fresh snapshot."""
        revision, now = self._listing()
        held = self._leases
        events = [LeaseEvent("delete", old, revision, resync=True)
                  for key, old in sorted(held.items()) if now.get(key) != old]
        events += [LeaseEvent("put", new, revision, resync=True)
                   for key, new in sorted(now.items()) if held.get(key) != new]
        logging.getLogger(type(self).__module__).warning(
            "watch of cluster %s: changes from revision %d on are %s; resynced from a "
            "snapshot at revision %d (%d changes)",
            self._cluster, self._next, self._history_lost, revision, len(events))
        self._pending.extend(events)
        self._leases = now
        self._next = revision + 1


class Store(ABC):
    """A lease store. Implementations: memory, sqlite, etcd; what each can do besides is
    declared by the capabilities at the end of this module."""

    url: str

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Everything the store holds; never creates the store."""

    @abstractmethod
    def update(self, plan: Callable[[Snapshot], tuple[ClusterWrite | None, R]],
               cluster: str | None = None) -> R:
        """Run plan on a fresh snapshot and apply its write atomically; return its result.

        plan must be pure: a store may run it again when a concurrent writer won a race.
        cluster: the cluster plan writes, when the caller knows it: a store whose writers
        race (etcd) queues them on it before reading.
        """

    @abstractmethod
    def watch(self, cluster: str, start_revision: int | None = None,
              known: Iterable[Lease] = (), node: str | None = None) -> LeaseWatch:
        """Every lease change of one cluster (of one node of it, when node is given: a
        speaker follows its own leases alone), in the order the store made them.

        - start_revision None: first a `put` for every lease the cluster holds now (with
          the revision read), then every change after that.
        - start_revision r: every change at revision r or later, nothing before. `known`
          is what the caller holds of the cluster's leases; it is needed only to work out
          the difference should the store have discarded the history from r on.
        Nothing is skipped and nothing is delivered twice while the watch lives. A lost
        connection is resumed by the watch itself from the revision after the last one it
        delivered (the changes of one revision come together). When the store stays
        unreachable for its timeout, `next()` raises StoreUnavailable and the watch is
        over; the caller resumes with watch(cluster, last.revision, known=its leases), where
        changes of that revision may come again: harmless for a consumer that keeps a set.
        When the history from the resume revision on is gone (etcd compaction), the watch
        compares a fresh snapshot with what it has delivered (or with `known`), delivers
        the difference as events with resync=True, logs a warning and goes on from the
        snapshot's revision. Memory and SQLite stores never discard history.
        """

    def close(self) -> None:  # noqa: B027 - a default that stores with connections override
        """Release connections; the default store holds none."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- Capabilities: what a back end declares it can do, by deriving from these classes, so
# that callers (the speaker) ask isinstance() instead of reading its URL.


class SharedStore:
    """A store that other processes can open too (a file, etcd), unlike `memory:`, which
    lives and dies with its process: the speaker hands it to its agent, a process of its
    own that runs in another working directory."""

    url: str

    def location(self) -> str:
        """What another process, in any working directory, gives open_store (with the same
        StoreOptions) to open this same store: by default the URL, which names no path."""
        return self.url

    def exists(self) -> bool:
        """Whether the store has been created: a store that is not reads as empty until a
        write creates it. By default it always exists (a server)."""
        return True


class FileStore(SharedStore):
    """A store kept in one file of this host, at `path` as the caller spelled it: relative
    to the working directory of the moment, for location() as for the store itself."""

    path: str

    def location(self) -> str:
        return os.path.abspath(self.path)

    def exists(self) -> bool:
        return os.path.exists(self.path)


class TtlHandle(Protocol):
    """A node's leases tied to a lease of the store that lapses unless kept alive."""

    id: int

    def keepalive(self) -> int:
        """Renew it; the seconds it now has. StoreError once the store let it lapse (the
        node's CIDRs are then free)."""
        ...


class TtlStore(ABC):
    """A store whose leases can be tied to a time-to-live (etcd leases): a node whose
    speaker stops renewing it loses its CIDRs after the TTL (flannel-style nodes)."""

    @abstractmethod
    def attach_ttl(self, cluster: str, node: str, ttl: int) -> TtlHandle:
        """Tie the node's leases to a fresh TTL of ttl seconds, which the caller renews
        more often than every ttl seconds. InvalidInput when the node holds no lease;
        StoreError when the store fails. A later write of the node's leases (allocate,
        release) makes them permanent again."""
