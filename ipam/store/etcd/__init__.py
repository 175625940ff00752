"""The etcd back end, one concern a module, each depending only on those before it:

    kv          the key-value interface (range, transaction with compares, watch, lease)
    grpc_kv     that interface on a real etcd: the only code importing pyetcd or grpc
    memory_kv   that interface in memory, with revisions and compares, for tests
    layout      the key layout and how a read becomes a snapshot (pure)
    batches     a write cut into transactions (pure)
    lock        the writers' lock, a queue in the manner of etcd's mutex
    watch       the watch of a cluster's or a node's leases
    ttl         leases tied to etcd leases (flannel-style nodes)
    store       the Store itself: read, plan, write in compared-and-swapped batches
"""

from ipam.store.etcd.store import EtcdStore

__all__ = ["EtcdStore"]
