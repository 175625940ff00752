"""The key-value interface on a real etcd: the only code that imports pyetcd or grpc.

An etcd cluster is reached through a list of endpoints, failing over in turn. Each endpoint
gets its own pyetcd client (one gRPC channel, authenticated when a user is given), made on
first use and dropped when it fails, so that the next call goes to the next endpoint on a
fresh channel. Every failure of pyetcd or gRPC is mapped through one table (`_classify`) to
what the caller should do: retry on another endpoint, give up, or read again past a
compaction.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from ipam.errors import StoreUnavailable
from ipam.store.etcd.kv import (
    KV,
    Compacted,
    Compare,
    Delete,
    Op,
    Put,
    RangeReply,
    StreamLost,
    TxnReply,
    WatchCallback,
    WatchEvent,
)

# gRPC's C core logs failed TLS handshakes and the like to stderr, around the one error line
# netplan prints; the same failures reach us as exceptions. Read when grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402
import pyetcd  # noqa: E402
from pyetcd import etcdrpc  # noqa: E402
from pyetcd import exceptions as etcd_errors  # noqa: E402
from pyetcd.events import PutEvent  # noqa: E402

T = TypeVar("T")

# A fresh channel per reconnect, retried quickly: the default backoff grows to minutes.
GRPC_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000),
                # A range reply of 10,000 leases is some 2 MiB, node pages of up to 512
                # nodes 50 KiB each: past gRPC's default 4 MiB. etcd sends any size.
                ("grpc.max_receive_message_length", 128 << 20)]

_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                # an expired auth token: a new connection authenticates afresh
                grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL,
                grpc.StatusCode.CANCELLED)
_COMPARE_TARGET = {"mod": etcdrpc.Compare.MOD, "version": etcdrpc.Compare.VERSION}


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
        return ("retry" if code in _RETRY_CODES else "fatal"), details
    if isinstance(exc, etcd_errors.Etcd3Exception):
        return "fatal", _one_line(str(exc) or type(exc).__name__)
    if isinstance(exc, OSError):
        return "fatal", f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    raise exc  # not an etcd failure: a bug, let it surface as one


def _request_op(op: Op) -> etcdrpc.RequestOp:
    if isinstance(op, Put):
        value = op.value.encode() if isinstance(op.value, str) else op.value
        return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
            key=op.key.encode(), value=value, lease=op.lease))
    if isinstance(op, Delete):
        return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(
            key=op.key.encode(),
            range_end=op.range_end.encode() if op.range_end else b""))
    return etcdrpc.RequestOp(request_range=_range_request(op.key, op.range_end, op.limit))


def _range_request(key: str, range_end: str | None, limit: int,
                   revision: int = 0) -> etcdrpc.RangeRequest:
    return etcdrpc.RangeRequest(key=key.encode(),
                                range_end=range_end.encode() if range_end else b"",
                                limit=limit, revision=revision)


def _compare(c: Compare) -> etcdrpc.Compare:
    message = etcdrpc.Compare(result=etcdrpc.Compare.EQUAL, target=_COMPARE_TARGET[c.target],
                              key=c.key.encode(),
                              range_end=c.range_end.encode() if c.range_end else b"")
    if c.target == "mod":
        message.mod_revision = c.value
    else:
        message.version = c.value
    return message


def _watch_event(event) -> WatchEvent:
    # pyetcd's events read prev_* from the event's prev_kv, asked for with prev_kv=True.
    prev = event.prev_value if event._event.HasField("prev_kv") else None
    if isinstance(event, PutEvent):
        return WatchEvent("put", event.key, event.value, event.mod_revision, prev)
    return WatchEvent("delete", event.key, b"", event.mod_revision, prev)


class GrpcKV(KV):
    def __init__(self, endpoints: Sequence[tuple[str, int]], *, timeout: float,
                 secure: bool = False, ca: str | None = None, cert: str | None = None,
                 key: str | None = None, user: str | None = None,
                 password: str | None = None) -> None:
        # gRPC targets and messages spell an IPv6 host in brackets: [fd00::1]:2379
        self.endpoints = [(f"[{h}]" if ":" in h else h, p) for h, p in endpoints]
        self.where = ",".join(f"{h}:{p}" for h, p in self.endpoints)
        self._timeout = timeout
        self._secure = secure or bool(ca or cert)
        self._tls = (ca, key, cert)
        self._user, self._password = user, password
        self._clients: dict[int, pyetcd.MultiEndpointEtcd3Client] = {}
        self._at = 0
        self._lock = threading.Lock()
        self._credentials: grpc.ChannelCredentials | None = None
        # One request may take the whole timeout only when there is no other endpoint to
        # try: a member that lost its leader holds a request until etcd's own timeout.
        self._request_timeout = timeout / min(2, len(self.endpoints))

    # --- endpoints and failover ------------------------------------------------------------

    def _client(self, i: int) -> pyetcd.MultiEndpointEtcd3Client:
        with self._lock:
            client = self._clients.get(i)
        if client is not None:
            return client
        if self._secure and self._credentials is None:
            ca, key, cert = self._tls
            self._credentials = grpc.ssl_channel_credentials(
                *(Path(path).read_bytes() if path else None for path in (ca, key, cert)))
        host, port = self.endpoints[i]
        # time_retry=0: pyetcd must not shelve the endpoint itself; failover happens here.
        endpoint = pyetcd.Endpoint(host, port, secure=self._secure, creds=self._credentials,
                                   time_retry=0, opts=GRPC_OPTIONS)
        client = pyetcd.MultiEndpointEtcd3Client(
            endpoints=[endpoint], timeout=self._request_timeout, user=self._user,
            password=self._password if self._user else None)
        if not self._secure:
            # gRPC sends call credentials only over TLS ("insufficient security level"):
            # on a plaintext channel the auth token goes as plain metadata, which pyetcd
            # sends with every call as well, as etcdctl does.
            client.call_credentials = None
        with self._lock:
            kept = self._clients.setdefault(i, client)
        if kept is not client:  # another thread connected meanwhile: use one channel
            client.close()
        return kept

    def _fail(self, client: pyetcd.MultiEndpointEtcd3Client) -> None:
        """Drop a client whose endpoint failed; the next call moves to the next endpoint."""
        with self._lock:
            for i, c in list(self._clients.items()):
                if c is client:
                    del self._clients[i]
                    if self._at == i:
                        self._at = (i + 1) % len(self.endpoints)
        client.close()

    def _call(self, what: str, fn: Callable[[pyetcd.MultiEndpointEtcd3Client], T]) -> T:
        """fn on a live endpoint; StoreUnavailable when none answers within the timeout.

        A transaction retried after a timeout may have been applied the first time: every
        write of the store compares a guard revision, so such a retry fails its compare and
        the caller re-plans from what is stored.
        """
        deadline = time.monotonic() + self._timeout
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
                    raise Compacted(reason) from exc
                if kind == "fatal":
                    raise StoreUnavailable(f"etcd {self.where}: {what}: {reason}") from exc
                host, port = self.endpoints[i]
                failures[f"{host}:{port}"] = reason
                if client is not None:
                    self._fail(client)
                else:
                    with self._lock:
                        self._at = (i + 1) % len(self.endpoints)
            if time.monotonic() >= deadline:
                last = "; ".join(f"{ep}: {r}" for ep, r in failures.items())
                raise StoreUnavailable(
                    f"etcd {self.where}: {what}: no endpoint answered within "
                    f"{self._timeout:g}s ({last})")
            with self._lock:
                cycled = self._at == 0
            if cycled:  # every endpoint failed once: give the cluster a moment
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def _rpc(client: pyetcd.MultiEndpointEtcd3Client, stub, request):
        return stub(request, client.timeout, credentials=client.call_credentials,
                    metadata=client.metadata)

    # --- the interface ---------------------------------------------------------------------

    def range(self, key: str, range_end: str | None = None, *, limit: int = 0,
              revision: int = 0) -> tuple[int, RangeReply]:
        request = _range_request(key, range_end, limit, revision)
        reply = self._call(f"read {key}",
                           lambda c: self._rpc(c, c.kvstub.Range, request))
        return reply.header.revision, RangeReply(reply.kvs, reply.more)

    def txn(self, compare: Sequence[Compare], success: Sequence[Op],
            failure: Sequence[Op] = ()) -> TxnReply:
        request = etcdrpc.TxnRequest(compare=[_compare(c) for c in compare],
                                     success=[_request_op(op) for op in success],
                                     failure=[_request_op(op) for op in failure])
        reply = self._call("transaction", lambda c: self._rpc(c, c.kvstub.Txn, request))
        replies = [RangeReply(r.response_range.kvs, r.response_range.more)
                   if r.WhichOneof("response") == "response_range" else None
                   for r in reply.responses]
        return TxnReply(reply.succeeded, reply.header.revision, replies)

    def grant(self, ttl: int) -> int:
        request = etcdrpc.LeaseGrantRequest(TTL=ttl)
        return self._call("grant a lease",
                          lambda c: self._rpc(c, c.leasestub.LeaseGrant, request)).ID

    def refresh(self, lease_id: int) -> int:
        def keepalive(c: pyetcd.MultiEndpointEtcd3Client) -> int:
            replies = list(c.leasestub.LeaseKeepAlive(
                iter([etcdrpc.LeaseKeepAliveRequest(ID=lease_id)]), c.timeout,
                credentials=c.call_credentials, metadata=c.metadata))
            return replies[-1].TTL if replies else 0

        return self._call("keep a lease alive", keepalive)

    def revoke(self, lease_id: int) -> None:
        request = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        self._call("revoke a lease", lambda c: self._rpc(c, c.leasestub.LeaseRevoke, request))

    def watch(self, key: str, range_end: str | None, start_revision: int,
              callback: WatchCallback) -> Callable[[], None]:
        """pyetcd calls back from its stream thread with every response, or with the error
        that ended the stream; a retryable one drops the endpoint's client, so that the
        consumer's next subscription goes to the next endpoint."""

        def add(client: pyetcd.MultiEndpointEtcd3Client):
            def deliver(response) -> None:
                if response is None:  # the client was closed under the stream
                    callback(StreamLost("closed"))
                elif isinstance(response, Exception):
                    try:
                        kind, reason = _classify(response)
                    except Exception as exc:  # noqa: BLE001 - a bug: end the watch with it
                        callback(exc)
                        return
                    if kind == "compacted":
                        callback(Compacted(reason))
                    elif kind == "fatal":
                        callback(StoreUnavailable(f"etcd {self.where}: watch {key}: {reason}"))
                    else:
                        self._fail(client)
                        callback(StreamLost(reason))
                else:
                    callback([_watch_event(e) for e in response.events])

            kwargs = {"range_end": range_end.encode()} if range_end else {}
            if start_revision:
                kwargs["start_revision"] = start_revision
            return client, client.add_watch_callback(key.encode(), deliver, prev_kv=True,
                                                     **kwargs)

        client, watch_id = self._call(f"watch {key}", add)

        def cancel() -> None:
            try:
                client.cancel_watch(watch_id)
            except (grpc.RpcError, etcd_errors.Etcd3Exception, ValueError):
                pass  # the stream is gone already: nothing left to cancel

        return cancel

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
