"""The store: Chroma (vectors) + a SQLite catalog (documents, chunks, model) + BM25.

Write order keeps a crash harmless: new vectors are upserted first, then the catalog
commits in one transaction, then replaced vectors are deleted and the lexical index is
swapped in. Readers trust the catalog, so half-written vectors are invisible, and the
next ingest removes them.
"""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .chunking import CHUNKER_VERSION, Chunk, chunk_documents
from .config import Settings
from .embeddings import resolve_model
from .errors import (
    ConfigError,
    IndexBusyError,
    IndexMismatchError,
    IndexMissingError,
    RagError,
    StoreUnavailableError,
    StoreWriteError,
)
from .identity import SourceResolver, doc_name, in_scope
from .lexical import LexicalIndex
from .limits import LimitExceeded, Limits, check_chunks, page_count
from .lines import LINES_VERSION, chunks_with_lines, load_lines, save_lines, split_lines
from .lines import SCHEMA as LINES_SCHEMA
from .lines import embed_text as line_embed_text
from .loaders import (
    LoadedFile,
    UnreadableFile,
    content_hash,
    discover,
    load_file,
    read_manifest,
    read_source,
)

log = logging.getLogger(__name__)

# Written when an index is created: RAG_INDEX_DIR is only written when it holds this file,
# is empty or new, or holds an index of an earlier version (recognised by its catalog).
MARKER = ".rag-index"
MARKER_TEXT = "onderwijs-jeugdhulp-rag index: written by `rag ingest`; do not put other files here\n"
SCHEMA_VERSION = 3  # 3: documents keyed by source and path (rag.identity), a sources table
CATALOG = "catalog.sqlite"
# What an index of an earlier version may hold (also a damaged one that `--rebuild` must replace).
_OWN_NAMES = {CATALOG, "chroma", "lexical", "lexical.tmp", "lexical.old", ".ingest.lock", ".write-test",
              "jobs"}  # jobs: the ingest queue's default folder (rag.ingest.queue)
REBUILD_HINT = "run `rag ingest --rebuild`"
# HNSW settings. Chroma's default ef_search (100) misses true nearest neighbours on e5 vectors
# (cosines crowd into 0.75-0.9): on 529 real-PDF chunks 5-7 of the exact top-30 per 55 questions,
# once the exact top-1. Below its sync threshold (default 1000 items) Chroma also rebuilds the
# graph on every load, so which ones it missed changed from process to process and so did the
# eval figures. ef_search 500 found the exact top-30 in every run; a sync threshold of 100
# stores the graph at ingest so every process searches the same one (ingest time unchanged at
# 20k vectors). The bench prints the query cost at 100k chunks (`dense query p50`).
EF_SEARCH = 500
SYNC_THRESHOLD = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, path TEXT NOT NULL, content_hash TEXT NOT NULL,
    title TEXT NOT NULL, kind TEXT NOT NULL, year INTEGER, publisher TEXT, url TEXT,
    pages INTEGER, chunks INTEGER NOT NULL, ingested_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    section TEXT NOT NULL, page INTEGER, text TEXT NOT NULL, page_label TEXT);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, ordinal);
CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, root TEXT NOT NULL);
""" + LINES_SCHEMA


@dataclass
class ChunkRecord:
    """A chunk as stored, joined with its document's metadata."""

    chunk_id: str
    doc_id: str
    ordinal: int
    section: str
    page: int | None
    text: str
    title: str
    kind: str
    year: int | None
    url: str
    page_label: str | None = None

    @property
    def embed_text(self) -> str:
        return f"{self.section}\n{self.text}" if self.section else self.text

    @property
    def name(self) -> str:
        """The document's readable name (path within its source, no suffix)."""
        return doc_name(self.doc_id)


@dataclass
class IngestReport:
    """What an ingest did; `as_json()` is the CLI's --json object."""

    documents: int = 0
    chunks_total: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)  # pages of ingested files that could not be read
    warnings: list[str] = field(default_factory=list)  # metadata fields dropped, with file and field
    seconds: float = 0.0
    changed_docs: list[str] = field(default_factory=list)
    # Documents already in the index whose content changed: {"doc_id", "path"} each.
    replaced: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "documents": self.documents,
            "chunks_total": self.chunks_total,
            "added": self.added,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "notes": self.notes,
            "replaced": self.replaced,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


def _upgrade_hnsw(collection) -> None:
    """Give a collection made with Chroma's default HNSW settings (an index from an older release)
    EF_SEARCH and SYNC_THRESHOLD (the stored graph takes effect at its next ingest or a rebuild);
    a store that refuses keeps answering, with less exact dense candidates."""
    try:
        hnsw = (collection.configuration or {}).get("hnsw") or {}
        if hnsw and (int(hnsw.get("ef_search") or 0) < EF_SEARCH or int(hnsw.get("sync_threshold") or 0) > SYNC_THRESHOLD):
            collection.modify(configuration={"hnsw": {"ef_search": EF_SEARCH, "sync_threshold": SYNC_THRESHOLD}})
    except Exception as exc:  # noqa: BLE001 - older servers lack configuration updates
        log.warning("could not update the collection's HNSW settings: %s", exc)


def _chroma_client(settings: Settings):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        from urllib.parse import urlparse

        url = urlparse(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"RAG_CHROMA_URL '{settings.chroma_url}' is not an http(s) URL; use e.g. http://127.0.0.1:8000.",
                "RAG_CHROMA_URL is geen geldige http-URL.",
            )
        try:
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
            client.heartbeat()
        except Exception as exc:  # noqa: BLE001 - httpx/chroma raise many connection types
            raise StoreUnavailableError(
                f"Cannot reach the Chroma server at {settings.chroma_url} ({exc.__class__.__name__}); "
                "start it (`chroma run --host 127.0.0.1 --port 8000 --path .chroma`) or unset RAG_CHROMA_URL.",
                "De Chroma-server is niet bereikbaar; probeer het later opnieuw of vraag de beheerder.",
            ) from exc
        return client
    path = settings.index_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


class Index:
    """Open (or create) the index under `settings.index_dir`."""

    def __init__(self, settings: Settings, embeddings=None):
        self.settings = settings
        self.dir = Path(settings.index_dir)
        self._embeddings = embeddings
        self._client = None
        self._collection = None
        self._lexical: LexicalIndex | None = None
        self._reuse: dict = {}  # embedded text -> stored vector, during an ingest
        self._lock = threading.RLock()
        self._local = threading.local()

    # -- plumbing -----------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.dir / CATALOG

    def exists(self) -> bool:
        """True when a catalog with at least one document exists."""
        if not self.catalog_path.is_file():
            return False
        try:
            return self._db().execute("SELECT COUNT(*) FROM documents").fetchone()[0] > 0
        except (sqlite3.DatabaseError, IndexMismatchError):
            return True  # present but damaged: let open() say so

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.catalog_path, timeout=30)
                conn.executescript(_SCHEMA)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}
                if "page_label" not in columns:  # a schema-1 index; its chunks are redone on the next ingest
                    conn.execute("ALTER TABLE chunks ADD COLUMN page_label TEXT")
                    conn.commit()
            except sqlite3.DatabaseError as exc:
                raise IndexMismatchError(
                    f"The index catalog {self.catalog_path} is damaged ({exc}); {REBUILD_HINT}.",
                    "De index is beschadigd; bouw hem opnieuw op (rag ingest --rebuild).",
                ) from exc
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def embeddings(self):
        if self._embeddings is None:
            from .embeddings import get_embeddings

            self._embeddings = get_embeddings(self.settings.embed_model, self.settings.embed_batch_size)
        return self._embeddings

    def collection(self, create: bool = False):
        """The Chroma collection (created on ingest, required on read)."""
        with self._lock:
            if self._collection is None:
                self._client = _chroma_client(self.settings)
                if create:
                    self._collection = self._client.get_or_create_collection(
                        self.settings.collection,
                        configuration={
                            "hnsw": {"space": "cosine", "ef_search": EF_SEARCH, "sync_threshold": SYNC_THRESHOLD}
                        },
                        embedding_function=None,
                    )
                else:
                    try:
                        self._collection = self._client.get_collection(self.settings.collection, embedding_function=None)
                    except Exception as exc:  # noqa: BLE001 - NotFoundError differs by client
                        raise IndexMismatchError(
                            f"The vector store has no collection '{self.settings.collection}'; {REBUILD_HINT}.",
                            "De index is onvolledig; bouw hem opnieuw op (rag ingest --rebuild).",
                        ) from exc
                # get_or_create keeps an existing collection's settings: bring older ones up to date.
                _upgrade_hnsw(self._collection)
            return self._collection

    def reset_connection(self) -> None:
        """Forget the Chroma client so the next call reconnects (after a server restart)."""
        with self._lock:
            self._client = None
            self._collection = None

    # -- reading ------------------------------------------------------------------
    def open(self) -> "Index":
        """Check the index is present, readable and built with the configured model."""
        if not self.catalog_path.is_file():
            raise IndexMissingError(
                f"No index in {self.dir}; run `rag ingest` first.",
                "Er is nog geen index; voeg documenten toe of voer `rag ingest` uit.",
            )
        try:
            built_with = self._meta("embed_model")
            docs = self._db().execute("SELECT COUNT(*), COALESCE(SUM(chunks),0) FROM documents").fetchone()
        except sqlite3.DatabaseError as exc:
            raise IndexMismatchError(
                f"The index catalog {self.catalog_path} is damaged ({exc}); {REBUILD_HINT}.",
                "De index is beschadigd; bouw hem opnieuw op (rag ingest --rebuild).",
            ) from exc
        if docs[0] == 0:
            raise IndexMissingError(
                f"The index in {self.dir} is empty; run `rag ingest`.",
                "De index is leeg; voeg documenten toe.",
            )
        _, wanted = resolve_model(self.settings.embed_model)
        if built_with != wanted:
            raise IndexMismatchError(
                f"The index was built with embedding model '{built_with}' but RAG_EMBED_MODEL is '{wanted}'; "
                f"{REBUILD_HINT} (or set RAG_EMBED_MODEL back).",
                "De index is gebouwd met een ander embeddingmodel; bouw hem opnieuw op (rag ingest --rebuild).",
            )
        count = self.collection().count()
        if count < docs[1]:
            raise IndexMismatchError(
                f"The vector store holds {count} of the catalog's {docs[1]} chunks (damaged or partly deleted); "
                f"{REBUILD_HINT}.",
                "De index is beschadigd; bouw hem opnieuw op (rag ingest --rebuild).",
            )
        self.lexical()
        return self

    def generation(self) -> int:
        """A number that changes with every committed write (0 before the first): cheap to read,
        so another process can tell that its caches are stale."""
        if not self.catalog_path.is_file():
            return 0
        return int(self._meta("generation") or 0)

    def lexical(self) -> LexicalIndex:
        """The BM25 index matching the catalog's generation (rebuilt if stale or missing)."""
        with self._lock:
            generation = int(self._meta("generation") or 0)
            if self._lexical is None or self._lexical.generation != generation:
                loaded = LexicalIndex.load(self.dir / "lexical")
                if loaded is None or loaded.generation != generation:
                    loaded = self._build_lexical(generation)
                self._lexical = loaded
            return self._lexical

    def _build_lexical(self, generation: int) -> LexicalIndex:
        rows = self._db().execute("SELECT chunk_id, section, text FROM chunks ORDER BY doc_id, ordinal").fetchall()
        lexical = LexicalIndex.build([r[0] for r in rows], [f"{r[1]}\n{r[2]}" for r in rows], generation)
        try:
            lexical.save(self.dir / "lexical")
        except OSError as exc:  # read-only index dir: keep it in memory
            log.warning("could not save lexical index: %s", exc)
        return lexical

    def dense_search(self, vector, n: int) -> list[tuple[str, float]]:
        """Top-n (chunk_id, cosine similarity) from Chroma."""
        try:
            collection = self.collection()
            # No count() per query: it costs more than the HNSW query at 100k chunks, and Chroma
            # returns fewer results when n exceeds the collection size.
            result = collection.query(
                query_embeddings=[list(map(float, vector))], n_results=max(1, n), include=["distances"]
            )
        except (IndexMismatchError, ConfigError):
            raise
        except Exception as exc:  # noqa: BLE001 - server gone: reconnect next time
            self.reset_connection()
            if self.settings.chroma_url:
                raise StoreUnavailableError(
                    f"Lost the Chroma server at {self.settings.chroma_url} ({exc.__class__.__name__}); "
                    "check that it runs, then ask again.",
                    "De Chroma-server is niet bereikbaar; probeer het zo opnieuw.",
                ) from exc
            raise IndexMismatchError(
                f"The vector store cannot be read ({exc.__class__.__name__}); {REBUILD_HINT}.",
                "De index kan niet gelezen worden; bouw hem opnieuw op (rag ingest --rebuild).",
            ) from exc
        ids = result["ids"][0]
        distances = result["distances"][0]
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances)]

    def get_chunks(self, ids: Iterable[str]) -> dict[str, ChunkRecord]:
        """Catalog rows for chunk ids (unknown ids are left out)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._db().execute(
            "SELECT c.chunk_id, c.doc_id, c.ordinal, c.section, c.page, c.text, d.title, d.kind, d.year, d.url, "
            "c.page_label "
            f"FROM chunks c JOIN documents d USING(doc_id) WHERE c.chunk_id IN ({marks})",
            ids,
        ).fetchall()
        return {r[0]: ChunkRecord(*r) for r in rows}

    def documents(self) -> list[dict]:
        """Indexed documents with their metadata and chunk counts."""
        if not self.catalog_path.is_file():
            return []
        cur = self._db().execute(
            "SELECT doc_id, title, kind, year, publisher, url, path, pages, chunks, ingested_at FROM documents ORDER BY doc_id"
        )
        names = [c[0] for c in cur.description]
        return [{**dict(zip(names, row)), "name": doc_name(row[0])} for row in cur.fetchall()]

    def chunks_of(self, doc_id: str) -> list[ChunkRecord]:
        """All chunks of one document in order."""
        ids = [r[0] for r in self._db().execute("SELECT chunk_id FROM chunks WHERE doc_id=? ORDER BY ordinal", (doc_id,))]
        found = self.get_chunks(ids)
        return [found[i] for i in ids if i in found]

    def info(self) -> dict:
        """Model, dimension and sizes, for the UI and `rag` output."""
        return {
            "embed_model": self._meta("embed_model"),
            "dimension": int(self._meta("dimension") or 0),
            "documents": self._db().execute("SELECT COUNT(*) FROM documents").fetchone()[0],
            "chunks": self._db().execute("SELECT COUNT(*) FROM chunks").fetchone()[0],
        }

    # -- writing ------------------------------------------------------------------
    @contextmanager
    def write_lock(self, timeout: float = 30.0):
        """Exclusive writer lock across processes; IndexBusyError after `timeout` seconds."""
        from filelock import FileLock, Timeout

        self._claim_dir()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            marker = self.dir / MARKER
            if not marker.is_file():
                marker.write_text(MARKER_TEXT, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"Cannot create the index dir {self.dir} ({exc.strerror or exc}); set RAG_INDEX_DIR to a writable folder.",
                "De indexmap kan niet worden aangemaakt; kies een andere map (RAG_INDEX_DIR).",
            ) from exc
        lock = FileLock(str(self.dir / ".ingest.lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout as exc:
            raise IndexBusyError(
                f"Another `rag ingest` is writing {self.dir}; wait for it to finish and try again.",
                "Er worden al documenten toegevoegd; probeer het over een minuut opnieuw.",
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def _claim_dir(self) -> None:
        """Refuse an index dir that is neither new, empty, marked as ours nor an older index of ours."""
        d = self.dir
        if (d / MARKER).is_file():
            return
        if d.exists() and not d.is_dir():
            raise ConfigError(
                f"RAG_INDEX_DIR {d} is a file, not a folder; set RAG_INDEX_DIR to a new or empty folder.",
                "De indexmap (RAG_INDEX_DIR) is een bestand; kies een nieuwe of lege map.",
            )
        if not d.is_dir():
            return
        try:
            names = {p.name for p in d.iterdir()}
        except OSError as exc:
            raise ConfigError(
                f"Cannot read the index dir {d} ({exc.strerror or exc}); set RAG_INDEX_DIR to a writable folder.",
                "De indexmap kan niet worden gelezen; kies een andere map (RAG_INDEX_DIR).",
            ) from exc
        if names <= _OWN_NAMES or self._is_catalog():
            return
        raise ConfigError(
            f"RAG_INDEX_DIR {d} holds other files and no index of this project, so nothing was written; "
            "set RAG_INDEX_DIR to a new or empty folder.",
            "De indexmap (RAG_INDEX_DIR) bevat andere bestanden; kies een nieuwe of lege map.",
        )

    def _is_catalog(self) -> bool:
        """True when the dir holds this project's catalog (an index made before the marker)."""
        if not self.catalog_path.is_file():
            return False
        try:
            conn = sqlite3.connect(f"{self.catalog_path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                return {"meta", "documents", "chunks"} <= tables
            finally:
                conn.close()
        except sqlite3.Error:
            return False

    def _wipe(self) -> None:
        self.close()
        self.reset_connection()
        if self.settings.chroma_url:
            client = _chroma_client(self.settings)
            try:
                client.delete_collection(self.settings.collection)
            except Exception:  # noqa: BLE001 - absent is fine
                pass
        self._release_embedded_chroma()
        for name in (CATALOG, "chroma", "lexical", "lexical.tmp", "lexical.old"):
            target = self.dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        self._lexical = None

    def _release_embedded_chroma(self) -> None:
        """chromadb caches one client system per folder; stop it before deleting the folder,
        or the next write in this process hits a stale read-only database."""
        from chromadb.api.shared_system_client import SharedSystemClient

        key = str(self.dir / "chroma")
        system = SharedSystemClient._identifier_to_system.pop(key, None)
        SharedSystemClient._identifier_to_refcount.pop(key, None)
        if system is not None:
            system.stop()

    def ingest(
        self,
        paths: list[Path] | None = None,
        rebuild: bool = False,
        progress: Callable[[int, int], None] | None = None,
        lock_timeout: float = 30.0,
        on_event: Callable[[str, int, int, str], None] | None = None,
    ) -> IngestReport:
        """Bring the index in line with the files under `paths` (default: the corpus).

        `progress(done, total)` reports embedded chunks. `on_event(stage, done, total, name)`
        reports every stage from the first second: "files" (per file checked or parsed),
        "pages" (per PDF page parsed, `name` = the file) and "embedding" (per batch)."""
        try:
            return self._ingest(paths, rebuild, progress, lock_timeout, on_event)
        except RagError:
            raise
        except Exception as exc:  # noqa: BLE001 - sqlite, chromadb and OS errors look alike here
            failure = self._write_failure(exc)
            if failure is None:
                raise
            # Chroma keeps one client per folder in the process; after a failed write its database
            # stays locked, so the next ingest (the app's next upload) starts from a fresh client.
            self._forget_store()
            raise failure from exc

    def _forget_store(self) -> None:
        try:
            self.close()
            self.reset_connection()
            if not self.settings.chroma_url:
                self._release_embedded_chroma()
        except Exception as exc:  # noqa: BLE001 - best effort after a failure already reported
            log.debug("could not release the store after a failed write: %s", exc)

    def _write_failure(self, exc: BaseException) -> RagError | None:
        """One sentence for a write that failed on a full, read-only or failing disk, else None."""
        texts, codes = [], set()
        seen: BaseException | None = exc
        while seen is not None:
            texts.append(str(seen).lower())
            if isinstance(seen, OSError) and seen.errno:
                codes.add(seen.errno)
            seen = seen.__cause__ or seen.__context__
        text = " ".join(texts)
        where = f"the index in {self.dir}" + (f" or the Chroma server at {self.settings.chroma_url}" if self.settings.chroma_url else "")
        again = "then run `rag ingest` again (the index keeps its last complete state)"
        if codes & {errno.ENOSPC, errno.EDQUOT} or "disk is full" in text or "no space left" in text:
            return StoreWriteError(
                f"Could not write {where}: the disk is full; free some space or set RAG_INDEX_DIR to a "
                f"folder on another disk, {again}.",
                "De index kon niet worden bijgewerkt: de schijf is vol. Vraag de beheerder ruimte vrij te maken.",
            )
        if errno.EROFS in codes or errno.EACCES in codes or "readonly database" in text or "read-only file system" in text:
            return StoreWriteError(
                f"Could not write {where}: it is read-only; make it writable or set RAG_INDEX_DIR to a "
                f"writable folder, {again}.",
                "De index kon niet worden bijgewerkt: de map is alleen-lezen. Vraag de beheerder om hulp.",
            )
        if errno.EIO in codes or "disk i/o error" in text:
            return StoreWriteError(
                f"Could not write {where}: the disk reported an I/O error; check the disk (space, "
                f"permissions, health), {again}.",
                "De index kon niet worden bijgewerkt door een schijffout. Vraag de beheerder om hulp.",
            )
        return None

    def _ingest(self, paths, rebuild, progress, lock_timeout, on_event) -> IngestReport:
        started = time.perf_counter()
        roots = [Path(p) for p in (paths or [self.settings.corpus_dir])]
        report = IngestReport()
        with self.write_lock(lock_timeout):
            self._check_writable()
            if rebuild:
                self._wipe()
            db = self._db()
            # The recorded name needs no model load: an unchanged corpus re-ingests without the model.
            model_name = (
                self._embeddings.model_name
                if self._embeddings is not None
                else resolve_model(self.settings.embed_model)[1]
            )
            built_with = self._meta("embed_model")
            if built_with and built_with != model_name:
                raise IndexMismatchError(
                    f"The index was built with '{built_with}', not '{model_name}'; {REBUILD_HINT} "
                    "(or set RAG_EMBED_MODEL back).",
                    "De index is gebouwd met een ander embeddingmodel; bouw hem opnieuw op.",
                )
            collection = self.collection(create=True)
            if self._meta("pending") == "1":
                self._remove_orphans(collection)
            catalog_chunks = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            vectors_missing = collection.count() < catalog_chunks

            known = {row[0]: row[1] for row in db.execute("SELECT doc_id, content_hash FROM documents")}
            rechunk = self._meta("chunking") not in (None, self.chunking_signature())
            if rechunk or vectors_missing:
                known = {}  # chunking changed or vectors lost: every document is done again
            scopes = self._scopes(roots)
            loaded, skipped = self._load(roots, known, on_event)
            report.skipped = [{"path": str(p), "reason": r} for p, r in skipped]
            report.notes = [{"path": str(lf.path), "reason": note} for lf in loaded for note in lf.notes]
            report.warnings = [w for lf in loaded for w in lf.warnings]
            limits = Limits.from_settings(self.settings)
            known_paths = {row[0]: row[1] for row in db.execute("SELECT doc_id, path FROM documents")}

            to_write: list[tuple[LoadedFile, list[Chunk]]] = []
            for lf in loaded:
                if known.get(lf.doc_id) == lf.content_hash:
                    report.unchanged += 1
                    continue
                chunks = chunk_documents(lf.documents, self.settings.chunk_size, self.settings.chunk_overlap)
                if not chunks:
                    report.skipped.append({"path": str(lf.path), "reason": "no text found"})
                    continue
                try:  # before any embedding: chunks and answer lines are what costs time
                    check_chunks(chunks, page_count(lf.documents), limits)
                except LimitExceeded as exc:
                    report.skipped.append({"path": str(lf.path), "reason": str(exc)})
                    continue
                to_write.append((lf, chunks))
                if lf.doc_id in known_paths and not rechunk and not vectors_missing:
                    report.replaced.append({"doc_id": lf.doc_id, "path": str(lf.path)})
            seen_ids = {lf.doc_id for lf in loaded}
            # Only documents of the sources (and sub-folders) being ingested can have disappeared;
            # ids from before sources (bare stems) go when their stored path lies under a root.
            gone = [
                d for d, p in known_paths.items()
                if d not in seen_ids and (
                    any(in_scope(d, key, prefix) for key, _, prefix in scopes)
                    or ("/" not in d and _under(Path(p), roots))
                )
            ]

            new_chunks = [c for _, chunks in to_write for c in chunks]
            replaced_ids = [
                r[0]
                for r in db.execute(
                    f"SELECT chunk_id FROM chunks WHERE doc_id IN ({','.join('?' * (len(to_write) + len(gone)))})",
                    [lf.doc_id for lf, _ in to_write] + gone,
                )
            ] if (to_write or gone) else []
            new_ids = {c.chunk_id for c in new_chunks}
            stale_ids = [i for i in replaced_ids if i not in new_ids]
            already_stored = set() if vectors_missing else set(replaced_ids)
            fresh = [c for c in new_chunks if c.chunk_id not in already_stored]
            # Chunks whose vectors are kept may still lack answer lines (an index from before lines).
            kept = [c for c in new_chunks if c.chunk_id in already_stored]
            need_lines = kept if rechunk else self._without_lines(kept)

            if new_chunks or gone:
                with db:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('pending', '1')")
                # Texts embedded before (a document renamed, re-chunked or edited in one place)
                # keep their vectors: only new texts go through the encoder.
                self._reuse = self._stored_vectors(collection, replaced_ids) if replaced_ids else {}
                line_vectors = self._upsert_vectors(collection, fresh, progress, on_event)
                line_vectors.update(self._embed_lines(need_lines))
                self._reuse = {}
                with db:
                    self._commit_catalog(db, to_write, gone, model_name, line_vectors)
                    db.executemany("INSERT OR REPLACE INTO sources VALUES (?, ?)",
                                   [(key, str(base)) for key, base, _ in scopes])
                if stale_ids:
                    for start in range(0, len(stale_ids), 5000):
                        collection.delete(ids=stale_ids[start : start + 5000])
                self._lexical = None
                self.lexical()
                with db:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('pending', '0')")
            report.added = len(fresh)
            report.removed = len(stale_ids)
            report.changed_docs = [lf.doc_id for lf, _ in to_write]
            report.documents = db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            report.chunks_total = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        report.seconds = time.perf_counter() - started
        return report

    def chunking_signature(self) -> str:
        """What the chunks depend on besides the files; a change re-chunks everything."""
        return (
            f"{CHUNKER_VERSION} {LINES_VERSION} size={self.settings.chunk_size} overlap={self.settings.chunk_overlap}"
        )

    def _check_writable(self) -> None:
        probe = self.dir / ".write-test"
        try:
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                probe.unlink(missing_ok=True)
                raise self._write_failure(exc) from exc
            raise ConfigError(
                f"The index dir {self.dir} is not writable ({exc.strerror}); set RAG_INDEX_DIR to a writable folder.",
                "De indexmap is niet schrijfbaar; kies een andere map (RAG_INDEX_DIR).",
            ) from exc

    def _load(
        self,
        roots: list[Path],
        known: dict[str, str] | None = None,
        on_event: Callable[[str, int, int, str], None] | None = None,
    ) -> tuple[list[LoadedFile], list[tuple[Path, str]]]:
        """Discover and load the files under `roots`, each identified by its source and path
        (rag.identity). A file whose bytes (and manifest entry) hash to its `known[doc_id]`
        is not parsed: it comes back without documents."""
        resolver = self._resolver()
        files: list[Path] = []
        skipped: list[tuple[Path, str]] = []
        for root in roots:
            resolver.register(*resolver.scope(root)[:2])
            found, missing = discover([root])
            files += found
            skipped += missing
        limits = Limits.from_settings(self.settings)
        manifests: dict[Path, dict] = {}
        loaded: list[LoadedFile] = []
        by_id: dict[str, Path] = {}
        for number, path in enumerate(files):
            if on_event:
                on_event("files", number, len(files), path.name)
            folder = path.parent
            if folder not in manifests:
                manifests[folder] = read_manifest(folder)
            identity = resolver.identify(path)
            if identity.doc_id in by_id and by_id[identity.doc_id] == path:
                continue  # the same file named twice (`rag ingest corpus corpus/x.md`)
            if not _utf8(str(path)):  # SQLite and Chroma store only valid Unicode text
                skipped.append((path, "file name is not valid UTF-8; rename the file"))
                continue
            try:
                data = read_source(path)
                digest = content_hash(data, path, manifests[folder])
                doc_id = identity.doc_id
                if known and known.get(doc_id) == digest and doc_id not in by_id:
                    lf = LoadedFile(path=path, doc_id=doc_id, content_hash=digest)
                else:
                    on_page = (lambda done, total, name=path.name: on_event("pages", done, total, name)) if on_event else None
                    lf = load_file(path, manifests[folder], data=data, on_page=on_page, identity=identity,
                                   limits=limits)
            except UnreadableFile as exc:
                skipped.append((path, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - a broken file must not stop the rest
                log.exception("unexpected error loading %s", path)
                skipped.append((path, f"could not be read ({exc.__class__.__name__})"))
                continue
            if lf.doc_id in by_id:
                skipped.append((path, f"same document id '{lf.doc_id}' as {by_id[lf.doc_id]}; rename one"))
                continue
            by_id[lf.doc_id] = path
            loaded.append(lf)
        if on_event:
            on_event("files", len(files), len(files), "")
        return loaded, skipped

    def _resolver(self) -> SourceResolver:
        # An index not created yet knows no sources (and parsing files must not create it).
        known = dict(self._db().execute("SELECT source, root FROM sources").fetchall()) if self.catalog_path.is_file() else {}
        return SourceResolver(self.settings.corpus_dir, known)

    def _scopes(self, roots: list[Path]) -> list[tuple[str, Path, str]]:
        """(source key, source folder, path prefix) of each root: where ingest may remove documents."""
        resolver = self._resolver()
        scopes = []
        for root in roots:
            scope = resolver.scope(root)
            resolver.register(*scope[:2])
            scopes.append(scope)
        return scopes

    def _without_lines(self, chunks: list[Chunk]) -> list[Chunk]:
        have = chunks_with_lines(self._db(), [c.chunk_id for c in chunks])
        return [c for c in chunks if c.chunk_id not in have]

    def _embed_lines(self, chunks: list[Chunk]) -> dict:
        """Answer lines and their vectors for chunks whose chunk vectors are already stored."""
        out: dict = {}
        batch = max(self.settings.embed_batch_size, 16) * 4
        for start in range(0, len(chunks), batch):
            out.update(self._encode_batch(chunks[start : start + batch])[1])
        return out

    def _stored_vectors(self, collection, chunk_ids: list[str]) -> dict:
        """Embedded text -> its stored vector, for the chunks (and their answer lines) about to be
        replaced, so that re-ingesting unchanged text costs no forward pass."""
        import numpy as np

        known: dict = {}
        db = self._db()
        for start in range(0, len(chunk_ids), 900):
            ids = chunk_ids[start : start + 900]
            marks = ",".join("?" * len(ids))
            rows = {r[0]: (r[1], r[2]) for r in db.execute(
                f"SELECT chunk_id, section, text FROM chunks WHERE chunk_id IN ({marks})", ids)}
            got = collection.get(ids=[i for i in ids if i in rows], include=["embeddings"])
            for cid, vector in zip(got["ids"], got["embeddings"]):
                section, text = rows[cid]
                known[f"{section}\n{text}" if section else text] = np.asarray(vector, dtype=np.float32)
            for cid, (lines, vectors) in load_lines(db, [i for i in ids if i in rows]).items():
                for line, vector in zip(lines, vectors):
                    known[line_embed_text(rows[cid][0], line)] = vector
        return known

    def _encode_batch(self, part: list[Chunk]):
        """One encoder call for a batch of chunks and their answer lines (passage prefix for both);
        texts with a stored vector (see `_stored_vectors`) are not encoded again."""
        import numpy as np

        cut = [(c, split_lines(c.text)) for c in part]
        texts = [c.embed_text for c in part]
        texts += [line_embed_text(c.section, ln) for c, lines in cut for ln in lines]
        reuse = self._reuse
        todo = [t for t in texts if t not in reuse]
        encoded = dict(zip(todo, self.embeddings.encode(todo, self.embeddings.passage_prefix))) if todo else {}
        vectors = np.vstack([encoded[t] if t in encoded else reuse[t] for t in texts]).astype(np.float32)
        lines_out: dict = {}
        at = len(part)
        for c, lines in cut:
            lines_out[c.chunk_id] = (lines, vectors[at : at + len(lines)])
            at += len(lines)
        return vectors[: len(part)], lines_out

    def centroid(self):
        """The normalised mean of all answer-line vectors: where the corpus is, in embedding
        space (off-topic questions are far from it). Cached per index generation."""
        import numpy as np

        generation = int(self._meta("generation") or 0)
        with self._lock:
            cached = getattr(self, "_centroid", None)
            if cached is not None and cached[0] == generation:
                return cached[1]
            total = None
            cursor = self._db().execute("SELECT vector FROM lines WHERE vector IS NOT NULL")
            while rows := cursor.fetchmany(50_000):
                block = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float16).reshape(len(rows), -1)
                part = block.astype(np.float32).sum(axis=0)
                total = part if total is None else total + part
            vector = None if total is None else total / max(float(np.linalg.norm(total)), 1e-9)
            self._centroid = (generation, vector)
            return vector

    def lines_for(self, chunk_ids: list[str]):
        """Stored answer lines and their vectors per chunk id (see rag.lines)."""
        return load_lines(self._db(), list(chunk_ids))

    def _upsert_vectors(self, collection, chunks: list[Chunk], progress, on_event=None) -> dict:
        line_vectors: dict = {}
        if not chunks:
            return line_vectors
        batch = max(self.settings.embed_batch_size, 16) * 4
        done = 0
        if on_event:  # before the first batch, which may also load the model
            on_event("embedding", 0, len(chunks), "")
        for start in range(0, len(chunks), batch):
            part = chunks[start : start + batch]
            vectors, lines = self._encode_batch(part)
            line_vectors.update(lines)
            collection.upsert(
                ids=[c.chunk_id for c in part],
                embeddings=vectors,
                documents=[c.text for c in part],
                metadatas=[
                    {
                        "doc_id": c.doc_id,
                        "title": c.metadata.get("title", ""),
                        "kind": c.metadata.get("kind", ""),
                        "section": c.section,
                        "page": c.page if c.page is not None else -1,
                    }
                    for c in part
                ],
            )
            done += len(part)
            if progress:
                progress(done, len(chunks))
            if on_event:
                on_event("embedding", done, len(chunks), "")
        return line_vectors

    def _commit_catalog(self, db, to_write, gone, model_name, line_vectors: dict | None = None) -> None:
        meta = {
            "chunking": self.chunking_signature(),
            "schema_version": str(SCHEMA_VERSION),
            "embed_model": model_name,
            "dimension": self._meta("dimension") or str(self.embeddings.dimension),
        }
        for key, value in meta.items():
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        for doc_id in [lf.doc_id for lf, _ in to_write] + gone:
            db.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
            db.execute("DELETE FROM documents WHERE doc_id=?", (doc_id,))
        now = time.time()
        for lf, chunks in to_write:
            m = lf.documents[0].metadata
            pages = [d.metadata.get("page") for d in lf.documents if d.metadata.get("page")]
            db.execute(
                "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (lf.doc_id, str(lf.path), lf.content_hash, m["title"], m["kind"], m.get("year"),
                 m.get("publisher", ""), m.get("url", ""), max(pages) if pages else None, len(chunks), now),
            )
            db.executemany(
                "INSERT INTO chunks (chunk_id, doc_id, ordinal, section, page, text, page_label) VALUES (?,?,?,?,?,?,?)",
                [(c.chunk_id, c.doc_id, c.ordinal, c.section, c.page, c.text, c.page_label) for c in chunks],
            )
        db.execute("DELETE FROM lines WHERE chunk_id NOT IN (SELECT chunk_id FROM chunks)")
        for chunk_id, (lines, vectors) in (line_vectors or {}).items():
            save_lines(db, chunk_id, lines, vectors)
        generation = int(self._meta("generation") or 0) + 1
        db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))

    def _remove_orphans(self, collection) -> None:
        """Delete vectors an interrupted ingest left behind."""
        known = {r[0] for r in self._db().execute("SELECT chunk_id FROM chunks")}
        stored = collection.get(include=[])["ids"]
        orphans = [i for i in stored if i not in known]
        for start in range(0, len(orphans), 5000):
            collection.delete(ids=orphans[start : start + 5000])
        if orphans:
            log.info("removed %d vectors left by an interrupted ingest", len(orphans))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _under(path: Path, roots: list[Path]) -> bool:
    path = path.resolve()
    for root in roots:
        root = root.resolve()
        if path == root or root in path.parents:
            return True
    return False
