"""`Index`: the facade callers use (retrieval, answering, cli, ui, evals) over the store's parts.

Everything that defines the index lives in Chroma (see store.client). What a process keeps
beside it (the catalog snapshot, the BM25 index, answer lines read so far, the centroid) is a
`View` built for one `index_id:generation` key; `refresh()` compares that key with the store's
(one small get, at most once per REFRESH_SECONDS) before a question is answered, so processes
sharing one Chroma server agree within about a second of a commit, without a restart.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..config import Settings
from ..embeddings import resolve_model
from ..errors import (
    ConfigError,
    IndexMismatchError,
    IndexMissingError,
    RagError,
    StoreUnavailableError,
)
from ..identity import doc_name
from ..lexical import LexicalIndex
from . import client as chroma
from . import local
from .answer_lines import LineStore
from .catalog import READY, Catalog, DocumentRecord
from .chunks import ChunkRecord, ChunkStore, record
from .lexical_cache import load_or_build
from .meta import Meta, MetaStore

log = logging.getLogger(__name__)

REBUILD_HINT = "run `rag ingest --rebuild`"
REFRESH_SECONDS = 1.0
# Reads of an embedded store retried while another process writes it (seconds grow per attempt).
READ_ATTEMPTS = 4
READ_RETRY_SECONDS = 0.25


@dataclass
class View:
    """What this process derived from one generation of the store."""

    meta: Meta
    docs: dict[str, DocumentRecord]
    visible: dict[str, str]  # committed chunk id -> doc_id
    lexical: LexicalIndex | None = None
    lines: dict = field(default_factory=dict)  # chunk_id -> (lines, vectors), or None when it has none
    centroid: tuple | None = None  # (vector,) once computed

    @property
    def key(self) -> str:
        return self.meta.key


class Index:
    """The index of `settings` (embedded Chroma under RAG_INDEX_DIR, or the server at RAG_CHROMA_URL)."""

    def __init__(self, settings: Settings, embeddings=None):
        self.settings = settings
        self.dir = Path(settings.index_dir)
        self.names = chroma.Names.of(settings.collection)
        self._embeddings = embeddings
        self._client = None
        self._collections: dict[str, object] = {}
        self._view: View | None = None
        self._checked = 0.0
        self._lock = threading.RLock()

    # -- plumbing -----------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        """The SQLite catalog of an index from before schema 4 (migrated on first open)."""
        return self.dir / local.CATALOG

    @property
    def where(self) -> str:
        """The store, for messages."""
        if self.settings.chroma_url:
            return f"collection '{self.settings.collection}' on {self.settings.chroma_url}"
        return str(self.dir)

    @property
    def embeddings(self):
        if self._embeddings is None:
            from ..embeddings import get_embeddings

            self._embeddings = get_embeddings(self.settings.embed_model, self.settings.embed_batch_size)
        return self._embeddings

    def _get(self, name: str, create: bool = False):
        """One of the index's collections; None when it does not exist and `create` is False."""
        with self._lock:
            found = self._collections.get(name)
            if found is not None:
                return found
            if self._client is None:
                client = chroma.connect(self.settings, create=create)
                if client is None:
                    return None
                self._client = client
            found = (chroma.create_collection(self._client, self.names, name) if create
                     else chroma.get_collection(self._client, name))
            if found is not None:
                if name == self.names.chunks and not create:
                    chroma.upgrade_hnsw(found)  # an index from an older release
                self._collections[name] = found
            return found

    def collection(self, create: bool = False):
        """The chunk-vector collection (created on ingest, required on read)."""
        found = self._get(self.names.chunks, create)
        if found is None:
            raise IndexMismatchError(
                f"The vector store has no collection '{self.settings.collection}'; {REBUILD_HINT}.",
                "De index is onvolledig; bouw hem opnieuw op (rag ingest --rebuild).",
            )
        return found

    def stores(self, create: bool = False) -> tuple[MetaStore, Catalog, ChunkStore, LineStore]:
        """The meta, catalog, chunk and line stores (IndexMissingError when there is no index)."""
        cols = [self._get(n, create) for n in (self.names.meta, self.names.documents, self.names.chunks, self.names.lines)]
        if any(c is None for c in cols):
            raise IndexMissingError(
                f"No index in {self.where}; run `rag ingest` first.",
                "Er is nog geen index; voeg documenten toe of voer `rag ingest` uit.",
            )
        return MetaStore(cols[0]), Catalog(cols[1]), ChunkStore(cols[2]), LineStore(cols[3])

    def reset_connection(self) -> None:
        """Forget the Chroma client so the next call reconnects (after a server restart)."""
        with self._lock:
            self._client = None
            self._collections = {}

    def close(self) -> None:
        """Nothing to close per thread any more; kept for callers that close after use."""

    def invalidate(self) -> None:
        """Drop everything derived from the store (this process just changed it)."""
        with self._lock:
            self._view = None
            self._checked = 0.0

    def _readable(self, action: Callable):
        """Run a read; a server that is gone or an unreadable folder gives one sentence."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return action()
            except RagError:
                raise
            except Exception as exc:  # noqa: BLE001 - chromadb, httpx and sqlite errors look alike here
                failure = exc
                if self.settings.chroma_url or attempt + 1 == READ_ATTEMPTS:
                    break
                # Embedded, another process (the ingest worker) may be writing the folder this
                # moment: read again through a fresh client before calling the index damaged.
                log.debug("embedded store read failed (%s); reading again", exc)
                self.release_embedded()
                self.invalidate()
                time.sleep(READ_RETRY_SECONDS * (attempt + 1))
        self.reset_connection()
        if self.settings.chroma_url:
            raise chroma.unavailable(self.settings, failure) from failure
        raise IndexMismatchError(
            f"The index in {self.dir} cannot be read ({failure.__class__.__name__}); {REBUILD_HINT}.",
            "De index kan niet gelezen worden; bouw hem opnieuw op (rag ingest --rebuild).",
        ) from failure

    # -- the derived view ------------------------------------------------------------
    def has_store(self) -> bool:
        """True when an index (or an older local catalog to migrate) exists; creates nothing."""
        if local.is_legacy_catalog(self.catalog_path):
            return True
        return self._readable(lambda: self._get(self.names.meta) is not None)

    def refresh(self, force: bool = False) -> None:
        """Drop the view when another process committed a change (one small get, throttled)."""
        now = time.monotonic()
        with self._lock:
            if self._view is None or (not force and now - self._checked < REFRESH_SECONDS):
                return
            self._checked = now
            view = self._view
        key = self._readable(lambda: self.stores()[0].key())
        if key != view.key:
            with self._lock:
                if self._view is view:
                    self._view = None
            if not self.settings.chroma_url:
                # An embedded client keeps the vector index it first read in memory: another
                # process's commit (the ingest worker's) is only seen by a new one.
                self.release_embedded()

    def generation(self) -> str:
        """The store's `index_id:generation` key: it changes with every committed write."""
        return self._readable(lambda: self.stores()[0].key())

    def release_embedded(self) -> None:
        """Drop this process's Chroma client, and for an embedded store chromadb's cached system,
        so the next call reads what other processes wrote since."""
        self.reset_connection()
        if not self.settings.chroma_url:
            chroma.release_embedded(self.settings)

    def view(self) -> View:
        """The view of the current generation (built on first use after a change)."""
        with self._lock:
            if self._view is not None:
                return self._view
        self._migrate_if_legacy()

        def build() -> View:
            meta_store, catalog, _, _ = self.stores()
            meta = meta_store.read()
            if meta is None:
                raise IndexMissingError(
                    f"No index in {self.where}; run `rag ingest` first.",
                    "Er is nog geen index; voeg documenten toe of voer `rag ingest` uit.",
                )
            docs = catalog.all()
            visible = {cid: d.doc_id for d in docs.values() for cid in d.chunk_ids}
            return View(meta, docs, visible)

        view = self._readable(build)
        with self._lock:
            self._view = view
            self._checked = time.monotonic()
        return view

    def _migrate_if_legacy(self, locked: bool = False) -> None:
        if local.is_legacy_catalog(self.catalog_path):
            from .migrate import migrate

            message = migrate(self, locked)
            if message:  # once per index, on stderr whoever opened it (CLI, app, evals)
                print(message, file=sys.stderr)

    def migrate(self) -> str | None:
        """Move an index from before schema 4 (SQLite catalog) into Chroma; what was done, or None."""
        from .migrate import migrate

        if not local.is_legacy_catalog(self.catalog_path):
            return None
        return migrate(self)

    # -- reading ------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the index holds at least one committed document."""
        try:
            if not self.has_store():
                return False
            return bool(self.view().docs)
        except IndexMissingError:
            return False
        except (IndexMismatchError, StoreUnavailableError):
            return True  # present but damaged or out of reach: let open() say so

    def open(self) -> "Index":
        """Check the index is present, readable and built with the configured model."""
        view = self.view()
        if not view.docs:
            raise IndexMissingError(
                f"The index in {self.where} is empty; run `rag ingest`.",
                "De index is leeg; voeg documenten toe.",
            )
        _, wanted = resolve_model(self.settings.embed_model)
        if view.meta.embed_model != wanted:
            raise IndexMismatchError(
                f"The index was built with embedding model '{view.meta.embed_model}' but RAG_EMBED_MODEL is '{wanted}'; "
                f"{REBUILD_HINT} (or set RAG_EMBED_MODEL back).",
                "De index is gebouwd met een ander embeddingmodel; bouw hem opnieuw op (rag ingest --rebuild).",
            )
        count = self._readable(lambda: self.collection().count())
        if count < len(view.visible):
            raise IndexMismatchError(
                f"The vector store holds {count} of the catalog's {len(view.visible)} chunks (damaged or partly deleted); "
                f"{REBUILD_HINT}.",
                "De index is beschadigd; bouw hem opnieuw op (rag ingest --rebuild).",
            )
        self.lexical()
        return self

    def lexical(self) -> LexicalIndex:
        """The BM25 index of the committed chunks (a cache keyed by generation)."""
        view = self.view()
        with self._lock:
            if view.lexical is not None:
                return view.lexical

        def rows() -> list[tuple[str, str]]:
            ordered = [cid for doc in view.docs.values() for cid in doc.chunk_ids]
            stored = self._readable(lambda: self.stores()[2].get(ordered))
            pairs = []
            for cid in sorted(ordered, key=lambda c: (view.visible[c], int(stored.get(c, ("", {}, None))[1].get("ordinal", 0)))):
                if cid in stored:
                    text, meta, _ = stored[cid]
                    pairs.append((cid, f"{meta.get('section', '')}\n{text}"))
            return pairs

        lexical = load_or_build(self.dir / "lexical", view.key, rows)
        with self._lock:
            view.lexical = lexical
        return lexical

    def dense_search(self, vector, n: int) -> list[tuple[str, float]]:
        """Top-n (chunk_id, cosine similarity) among committed chunks."""
        view = self.view()
        # No count() per query: it costs more than the HNSW query at 100k chunks.
        store = ChunkStore(self._readable(lambda: self.collection()))
        wanted = max(1, n)
        hits = self._readable(lambda: store.query(vector, wanted))
        found = [h for h in hits if h[0] in view.visible]
        if len(found) < len(hits) and len(hits) == wanted:  # chunks of an ingest under way took places
            hits = self._readable(lambda: store.query(vector, wanted * 3))
            found = [h for h in hits if h[0] in view.visible]
        return found[:wanted]

    def get_chunks(self, ids: Iterable[str]) -> dict[str, ChunkRecord]:
        """Committed chunks by id (unknown and uncommitted ids are left out)."""
        view = self.view()
        ids = [i for i in dict.fromkeys(ids) if i in view.visible]
        if not ids:
            return {}
        stored = self._readable(lambda: self.stores()[2].get(ids))
        return {cid: record(cid, text, meta, view.docs[view.visible[cid]])
                for cid, (text, meta, _) in stored.items() if cid in view.visible}

    def documents(self) -> list[dict]:
        """Committed documents with their metadata, state and chunk counts."""
        try:
            if not self.has_store():
                return []
            self.refresh()  # the Bronnen page lists what the other replicas committed too
            docs = self.view().docs
        except IndexMissingError:
            return []
        out = []
        for d in docs.values():
            out.append({
                "doc_id": d.doc_id, "title": d.title, "kind": d.kind, "year": d.year, "publisher": d.publisher,
                "url": d.url, "path": d.path, "pages": d.pages, "chunks": d.chunks, "ingested_at": d.ingested_at,
                "added_by": d.added_by, "added_at": d.added_at, "state": d.state, "content_hash": d.content_hash,
                "name": doc_name(d.doc_id),
            })
        return out

    def chunks_of(self, doc_id: str) -> list[ChunkRecord]:
        """All chunks of one document in order."""
        doc = self.view().docs.get(doc_id)
        if doc is None:
            return []
        found = self.get_chunks(doc.chunk_ids)
        return sorted((found[i] for i in doc.chunk_ids if i in found), key=lambda r: r.ordinal)

    def info(self) -> dict:
        """Model, dimension and sizes, for the UI and `rag` output."""
        self.refresh()
        view = self.view()
        return {
            "embed_model": view.meta.embed_model,
            "dimension": view.meta.dimension,
            "documents": len(view.docs),
            "chunks": len(view.visible),
        }

    def lines_for(self, chunk_ids: list[str]):
        """Answer lines and their vectors per chunk id (chunks without lines are left out).

        A document that is searchable but whose lines are not stored yet gets its lines cut now,
        each carrying its passage's vector: no forward pass, so a question asked while the worker
        writes the lines costs what it costs when idle (cosine then ranks passages, not lines,
        until the document is ready)."""
        view = self.view()
        ids = [c for c in dict.fromkeys(chunk_ids) if c in view.visible]
        todo = [c for c in ids if c not in view.lines]
        if todo:
            loaded = self._readable(lambda: self.stores()[3].load(todo))
            with self._lock:
                for cid in todo:
                    view.lines[cid] = loaded.get(cid)
        waiting = [c for c in ids if view.lines.get(c) is None and view.docs[view.visible[c]].state != READY]
        if waiting:
            self._approximate_lines(view, waiting)
        return {c: view.lines[c] for c in ids if view.lines.get(c) is not None}

    def _approximate_lines(self, view: View, chunk_ids: list[str]) -> None:
        import numpy as np

        from ..lines import split_lines
        from .answer_lines import rounded

        stored = self._readable(lambda: self.stores()[2].get(chunk_ids, embeddings=True))
        with self._lock:
            for cid, (text, _, vector) in stored.items():
                lines = split_lines(text)
                if lines and vector is not None:
                    view.lines[cid] = (lines, rounded(np.tile(np.asarray(vector, dtype=np.float32), (len(lines), 1))))

    def centroid(self):
        """The normalised mean of all answer-line vectors: where the corpus is, in embedding
        space (off-topic questions are far from it). Kept per generation from the catalog's sums."""
        import numpy as np

        view = self.view()
        if view.centroid is None:
            sums = [d.line_sum for d in view.docs.values() if d.line_sum]
            total = np.sum(np.asarray(sums, dtype=np.float32), axis=0) if sums else None
            vector = None if total is None else total / max(float(np.linalg.norm(total)), 1e-9)
            view.centroid = (vector,)
        return view.centroid[0]

    # -- writing ------------------------------------------------------------------
    @contextmanager
    def write_lock(self, timeout: float = 30.0):
        """Exclusive writer lock: across processes on this machine, and with a Chroma server also
        across machines (the lease on the server); IndexBusyError after `timeout` seconds."""
        with local.write_lock(self.dir, timeout):
            if not self.settings.chroma_url:
                yield  # embedded: the store is this folder, which the file lock already guards
                return
            from .lease import writer_lease

            with writer_lease(self.settings, timeout):
                yield

    def chunking_signature(self) -> str:
        """What the chunks depend on besides the files; a change re-chunks everything."""
        from ..chunking import CHUNKER_VERSION
        from ..lines import LINES_VERSION

        return (
            f"{CHUNKER_VERSION} {LINES_VERSION} size={self.settings.chunk_size} overlap={self.settings.chunk_overlap}"
        )

    def ingest(
        self,
        paths: list[Path] | None = None,
        rebuild: bool = False,
        progress: Callable[[int, int], None] | None = None,
        lock_timeout: float = 30.0,
        on_event: Callable[[str, int, int, str], None] | None = None,
        added_by: str | None = None,
    ):
        """Bring the index in line with the files under `paths` (default: the corpus).

        `progress(done, total)` reports embedded chunks. `on_event(stage, done, total, name)`
        reports every stage from the first second: "files" (per file checked or parsed),
        "pages" (per PDF page parsed, `name` = the file), "embedding" (chunks, per batch),
        "searchable" (a document's chunks are committed, `name` = its doc_id), "lines" (answer
        lines, per batch of chunks) and "ready" (a document's answer lines are committed).
        `added_by` is recorded in the catalog as who added or replaced the documents."""
        from .ingest import Ingest

        try:
            return Ingest(self, progress, on_event, added_by).run(paths, rebuild, lock_timeout)
        except RagError:
            raise
        except Exception as exc:  # noqa: BLE001 - sqlite, chromadb and OS errors look alike here
            failure = local.write_failure(exc, self._where_written(), None if self.settings.chroma_url else self.dir)
            if failure is None:
                raise
            # Chroma keeps one client per folder in the process; after a failed write its database
            # stays locked, so the next ingest (the app's next upload) starts from a fresh client.
            self._forget_store()
            raise failure from exc

    def load_files(self, roots: list[Path]):
        """Parse the files under `roots` as ingest would, writing nothing: (LoadedFile list, skipped)."""
        from ..identity import SourceResolver
        from .ingest import Ingest

        sources = {}
        try:
            if self.has_store():
                sources = self.view().meta.sources
        except RagError:
            pass
        return Ingest(self)._load(SourceResolver(self.settings.corpus_dir, sources), [Path(r) for r in roots])

    def remove(self, doc_ids: list[str], lock_timeout: float = 30.0) -> int:
        """Remove documents from the index (not their files): their records are deleted first (one
        commit, so they vanish whole for every process), then their chunks and lines. The number removed."""
        with self.write_lock(lock_timeout):
            meta_store, catalog, chunks, lines = self.stores()
            docs = catalog.all()
            gone = [d for d in dict.fromkeys(doc_ids) if d in docs]
            if not gone:
                return 0
            meta = meta_store.read()
            catalog.delete(gone)
            meta_store.bump(meta)
            self.invalidate()
            stale = [cid for d in gone for cid in docs[d].chunk_ids]
            chunks.delete(stale)
            lines.delete_chunks(stale)
            return len(gone)

    def _where_written(self) -> str:
        where = f"the index in {self.dir}"
        return where + (f" or the Chroma server at {self.settings.chroma_url}" if self.settings.chroma_url else "")

    def _forget_store(self) -> None:
        try:
            self.invalidate()
            self.reset_connection()
            if not self.settings.chroma_url:
                chroma.release_embedded(self.settings)
        except Exception as exc:  # noqa: BLE001 - best effort after a failure already reported
            log.debug("could not release the store after a failed write: %s", exc)

    def wipe(self) -> None:
        """Delete the whole index: its collections, and the local folder's files."""
        self.invalidate()
        self.reset_connection()
        if self.settings.chroma_url:
            client = chroma.connect(self.settings)
            for name in self.names.all():
                try:
                    client.delete_collection(name)
                except Exception:  # noqa: BLE001 - absent is fine
                    pass
        else:
            chroma.release_embedded(self.settings)
        for name in (local.CATALOG, local.MIGRATED, "chroma", "lexical", "lexical.tmp", "lexical.old"):
            if name == "chroma" and self.settings.chroma_url:
                continue
            target = self.dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


__all__ = ["Index", "View", "ChunkRecord", "REBUILD_HINT", "READY", "ConfigError", "StoreUnavailableError"]
