"""The writer lease on a real `chroma run` server: one writer at a time across machines."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import make_settings

from rag.errors import IndexBusyError
from rag.store import Index
from rag.store import lease as lease_module
from rag.store.client import connect

pytestmark = pytest.mark.slow


def _replicas(tmp_path, chroma_server):
    # Two replicas on two "machines": each its own local folder (so its own file lock), one server.
    collection = f"lease{tmp_path.name[-20:].replace('_', '')}"
    return (Index(make_settings(tmp_path / "a", chroma_url=chroma_server, collection=collection)),
            Index(make_settings(tmp_path / "b", chroma_url=chroma_server, collection=collection)))


def test_a_second_replica_waits_for_the_writer_on_another_machine(tmp_path, chroma_server):
    a, b = _replicas(tmp_path, chroma_server)
    with a.write_lock(timeout=5):
        started = time.monotonic()
        with pytest.raises(IndexBusyError) as busy:
            with b.write_lock(timeout=1.0):
                pass
        assert time.monotonic() - started >= 1.0
        assert "Another writer" in str(busy.value) and "opnieuw" in busy.value.dutch
    # Released: the other replica takes it at once, and a writer that finishes meanwhile is waited for.
    with b.write_lock(timeout=1.0):
        pass
    entered = threading.Event()
    order: list[str] = []

    def hold_a() -> None:
        with a.write_lock(timeout=5):
            entered.set()
            time.sleep(1.0)
            order.append("a done")

    worker = threading.Thread(target=hold_a)
    worker.start()
    assert entered.wait(10)
    with b.write_lock(timeout=10):
        order.append("b in")
    worker.join()
    assert order == ["a done", "b in"]


def test_a_killed_writers_lease_runs_out_and_is_taken_over(tmp_path, chroma_server):
    a, _ = _replicas(tmp_path, chroma_server)
    settings = a.settings
    collection = connect(settings).get_or_create_collection(settings.collection + lease_module.SUFFIX,
                                                             embedding_function=None)
    ghost = lease_module.WriterLease(collection, holder="gone-host:4242:dead")
    ghost._claim()  # a writer that was killed: its lease is never renewed nor released
    assert ghost.current()[0] == "gone-host:4242:dead"
    with pytest.raises(IndexBusyError, match="gone-host"):
        with a.write_lock(timeout=0.5):
            pass
    # Its expiry passes (written as if TTL_SECONDS ago): the next writer takes over.
    collection.upsert(ids=[lease_module.RECORD_ID], embeddings=[[0.0]],
                      metadatas=[{"holder": "gone-host:4242:dead", "expires": time.time() - 1}])
    with a.write_lock(timeout=2.0):
        holder, expires = ghost.current()
        assert holder != "gone-host:4242:dead" and expires > time.time()
    assert ghost.current() == (None, 0.0)  # released after the write


def test_two_replicas_that_claim_at_once_never_both_hold_it(tmp_path, chroma_server):
    a, b = _replicas(tmp_path, chroma_server)
    inside = 0
    most = 0
    guard = threading.Lock()
    errors: list[BaseException] = []

    def write(index: Index) -> None:
        nonlocal inside, most
        try:
            for _ in range(3):
                with index.write_lock(timeout=30):
                    with guard:
                        inside += 1
                        most = max(most, inside)
                    time.sleep(0.2)
                    with guard:
                        inside -= 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(index,)) for index in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and most == 1
