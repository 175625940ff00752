"""The writers' lock on the in-memory key-value layer: a queue in which each writer waits
for the one before it, and a holder that dies lets the next one go (its etcd lease ends)."""

from __future__ import annotations

import threading
import time

from ipam.store.etcd.kv import Range, prefix_end
from ipam.store.etcd.lock import WritersLock
from ipam.store.etcd.memory_kv import MemoryKV

QUEUE = "/netplan/demo/lock"


def _queue_in_thread(kv: MemoryKV, held: list) -> threading.Thread:
    def run():
        lock, _ = WritersLock.take(kv, QUEUE)
        held.append(lock)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_writers_take_the_lock_in_the_order_they_queued():
    kv = MemoryKV()
    first, read = WritersLock.take(kv, QUEUE, then=[Range("/netplan/", prefix_end("/netplan/"))])
    assert first is not None and read is not None  # an empty queue: held at once, read too
    second: list = []
    t2 = _queue_in_thread(kv, second)
    _wait_for(lambda: len(kv.keys(QUEUE + "/")) == 2)
    third: list = []
    t3 = _queue_in_thread(kv, third)
    _wait_for(lambda: len(kv.keys(QUEUE + "/")) == 3)
    time.sleep(0.1)
    assert second == [] and third == []
    first.release()
    t2.join(timeout=10)
    assert second and second[0] is not None
    time.sleep(0.1)
    assert third == []  # a release wakes the next writer only
    second[0].release()
    t3.join(timeout=10)
    assert third and third[0] is not None
    third[0].release()
    assert kv.keys(QUEUE + "/") == {}


def test_a_holder_that_dies_hands_the_lock_on_when_its_lease_ends():
    kv = MemoryKV()
    dead, _ = WritersLock.take(kv, QUEUE)
    dead.abandon()  # killed: nobody keeps its etcd lease alive
    waiting: list = []
    thread = _queue_in_thread(kv, waiting)
    _wait_for(lambda: len(kv.keys(QUEUE + "/")) == 2)
    holder_lease = int(dead.key.rsplit("/", 1)[1], 16)  # its key is named after its lease
    kv.expire(holder_lease)
    thread.join(timeout=10)
    assert waiting and waiting[0] is not None
    waiting[0].release()
