"""The writer lease: one writer at a time for an index on a Chroma server, across machines.

The file lock in RAG_INDEX_DIR (`local.write_lock`) orders the writers of one machine. With a
Chroma server, app replicas and workers on other machines write the same collections, so a
writer also takes the lease record in `<name>-writer` on the server: its holder and an expiry,
renewed every RENEW_SECONDS while it writes. Chroma has no compare-and-swap, so a taker writes
its claim, waits SETTLE_SECONDS and reads it back: of two that claimed at once, the one whose
claim landed last holds it and the other waits. A killed writer's lease runs out after
TTL_SECONDS. Expiries are compared across machines: their clocks must agree within seconds (NTP).
The collection is not one of the index's (`Names.all()`), so a rebuild does not drop the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager

from ..errors import IndexBusyError
from .client import NO_VECTOR, connect

log = logging.getLogger(__name__)

SUFFIX = "-writer"
RECORD_ID = "writer"
TTL_SECONDS = 30.0
RENEW_SECONDS = 10.0
SETTLE_SECONDS = 0.3
POLL_SECONDS = 0.5


class WriterLease:
    """The lease record of one index on one Chroma server, taken and renewed by this process."""

    def __init__(self, collection, holder: str | None = None):
        self.collection = collection
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def current(self) -> tuple[str | None, float]:
        """(holder, expiry as epoch seconds) of the record; (None, 0.0) when nobody holds it."""
        got = self.collection.get(ids=[RECORD_ID], include=["metadatas"])
        if not got["ids"]:
            return None, 0.0
        marks = got["metadatas"][0] or {}
        return marks.get("holder"), float(marks.get("expires") or 0.0)

    def _claim(self) -> None:
        self.collection.upsert(ids=[RECORD_ID], embeddings=[NO_VECTOR],
                               metadatas=[{"holder": self.holder, "expires": time.time() + TTL_SECONDS}])

    def acquire(self, timeout: float) -> bool:
        """Take the lease, waiting up to `timeout` seconds for the holder to finish or expire."""
        deadline = time.monotonic() + timeout
        while True:
            holder, expires = self.current()
            if holder is None or holder == self.holder or expires < time.time():
                self._claim()
                time.sleep(SETTLE_SECONDS)
                if self.current()[0] == self.holder:
                    self._stop.clear()
                    self._renewer = threading.Thread(target=self._renew, name="rag-writer-lease", daemon=True)
                    self._renewer.start()
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                if self.current()[0] != self.holder:
                    log.error("the writer lease of %s was taken over while this process was writing",
                              self.collection.name)
                    return
                self._claim()
            except Exception as exc:  # noqa: BLE001 - a server hiccup: the next renewal retries
                log.warning("could not renew the writer lease: %s", exc)

    def release(self) -> None:
        """Stop renewing and give the lease back (if it is still ours)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=RENEW_SECONDS)
        if self.current()[0] == self.holder:
            self.collection.delete(ids=[RECORD_ID])


@contextmanager
def writer_lease(settings, timeout: float):
    """Hold the index's writer lease on the Chroma server; IndexBusyError after `timeout` seconds."""
    collection = connect(settings).get_or_create_collection(settings.collection + SUFFIX, embedding_function=None)
    lease = WriterLease(collection)
    if not lease.acquire(timeout):
        holder = (lease.current()[0] or "?").split(":")[0]
        raise IndexBusyError(
            f"Another writer (on {holder}) is writing the index on {settings.chroma_url}; wait for it to finish "
            "and try again.",
            "Er worden al documenten toegevoegd; probeer het over een minuut opnieuw.",
        )
    try:
        yield lease
    finally:
        lease.release()
