"""The ingest pipeline that writes the store: files -> chunks -> vectors -> catalog -> lines.

Write order keeps every document whole for readers. Per document: its chunk vectors are
upserted, then its catalog record is committed in state `searchable` (generation bumped: from
here it is retrievable, answered from chunk text), then the replaced version's chunks are
deleted. After all documents are searchable their answer lines are encoded and stored, and each
record is committed again in state `ready`. A crash leaves uncommitted chunks and lines (never
listed by a record, so never retrievable) and the `pending` mark; the next ingest deletes them
and finishes the lines of documents still `searchable`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..chunking import Chunk, chunk_documents
from ..embeddings import resolve_model
from ..errors import IndexMismatchError
from ..identity import SourceResolver, in_scope
from ..limits import LimitExceeded, Limits, check_chunks, page_count
from ..lines import embed_text as line_embed_text
from ..lines import split_lines
from ..loaders import LoadedFile, UnreadableFile, content_hash, discover, load_file, read_manifest, read_source
from . import local
from .catalog import READY, SEARCHABLE, DocumentRecord
from .meta import Meta

log = logging.getLogger(__name__)


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


class Ingest:
    """One run of the pipeline for an Index (see `Index.ingest`)."""

    def __init__(self, index, progress=None, on_event: Callable[[str, int, int, str], None] | None = None,
                 added_by: str | None = None):
        self.index = index
        self.settings = index.settings
        self.progress = progress
        self.on_event = on_event
        self.added_by = added_by
        self._reuse: dict = {}

    def _event(self, stage: str, done: int, total: int, name: str = "") -> None:
        if self.on_event:
            self.on_event(stage, done, total, name)

    def run(self, paths, rebuild: bool, lock_timeout: float) -> IngestReport:
        started = time.perf_counter()
        index = self.index
        roots = [Path(p) for p in (paths or [self.settings.corpus_dir])]
        report = IngestReport()
        with index.write_lock(lock_timeout):
            local.check_writable(index.dir)
            if rebuild:
                index.wipe()
            index.invalidate()
            index._migrate_if_legacy(locked=True)
            # The recorded name needs no model load: an unchanged corpus re-ingests without the model.
            model_name = (index._embeddings.model_name if index._embeddings is not None
                          else resolve_model(self.settings.embed_model)[1])
            meta_store, catalog, chunks, lines = index._readable(lambda: index.stores(create=True))
            meta = index._readable(meta_store.read) or Meta()
            if meta.embed_model and meta.embed_model != model_name:
                raise IndexMismatchError(
                    f"The index was built with '{meta.embed_model}', not '{model_name}'; run `rag ingest --rebuild` "
                    "(or set RAG_EMBED_MODEL back).",
                    "De index is gebouwd met een ander embeddingmodel; bouw hem opnieuw op.",
                )
            docs = index._readable(catalog.all)
            if meta.pending:
                self._remove_orphans(docs, chunks, lines)
            visible = sum(d.chunks for d in docs.values())
            vectors_missing = chunks.count() < visible
            known = {d.doc_id: d.content_hash for d in docs.values()}
            rechunk = meta.chunking not in (None, index.chunking_signature())
            if rechunk or vectors_missing:
                known = {}  # chunking changed or vectors lost: every document is done again
            resolver = SourceResolver(self.settings.corpus_dir, meta.sources)
            scopes = self._scopes(resolver, roots)
            loaded, skipped = self._load(resolver, roots, known)
            report.skipped = [{"path": str(p), "reason": r} for p, r in skipped]
            report.notes = [{"path": str(lf.path), "reason": note} for lf in loaded for note in lf.notes]
            report.warnings = [w for lf in loaded for w in lf.warnings]
            limits = Limits.from_settings(self.settings)

            to_write: list[tuple[LoadedFile, list[Chunk]]] = []
            for lf in loaded:
                if known.get(lf.doc_id) == lf.content_hash:
                    report.unchanged += 1
                    continue
                new = chunk_documents(lf.documents, self.settings.chunk_size, self.settings.chunk_overlap)
                if not new:
                    report.skipped.append({"path": str(lf.path), "reason": "no text found"})
                    continue
                try:  # before any embedding: chunks and answer lines are what costs time
                    check_chunks(new, page_count(lf.documents), limits)
                except LimitExceeded as exc:
                    report.skipped.append({"path": str(lf.path), "reason": str(exc)})
                    continue
                to_write.append((lf, new))
                if lf.doc_id in docs and not rechunk and not vectors_missing:
                    report.replaced.append({"doc_id": lf.doc_id, "path": str(lf.path)})
            seen_ids = {lf.doc_id for lf in loaded}
            # Only documents of the sources (and sub-folders) being ingested can have disappeared;
            # ids from before sources (bare stems) go when their stored path lies under a root.
            gone = [
                d for d, rec in docs.items()
                if d not in seen_ids and (
                    any(in_scope(d, key, prefix) for key, _, prefix in scopes)
                    or ("/" not in d and _under(Path(rec.path), roots))
                )
            ]
            unfinished = [d for d, rec in docs.items() if rec.state != READY and d not in seen_ids and d not in gone]
            unfinished += [lf.doc_id for lf in loaded
                           if known.get(lf.doc_id) == lf.content_hash and docs[lf.doc_id].state != READY]

            before = (meta.embed_model, meta.chunking, dict(meta.sources))
            meta.embed_model = model_name
            meta.chunking = index.chunking_signature()
            meta.sources.update({key: str(base) for key, base, _ in scopes})
            if to_write or gone or unfinished or meta.generation == 0:
                meta.pending = True
                meta.dimension = meta.dimension or (self.index.embeddings.dimension if to_write else 0)
                meta_store.write(meta)
                if gone and to_write:  # a renamed document keeps its vectors
                    self._reuse.update(self._stored_vectors(chunks, lines, [c for d in gone for c in docs[d].chunk_ids]))
                written = self._write_searchable(to_write, docs, rechunk or vectors_missing, meta, report)
                docs.update({rec.doc_id: rec for rec, _ in written})
                if gone:
                    catalog.delete(gone)
                    meta_store.bump(meta)
                    index.invalidate()
                    stale = [cid for d in gone for cid in docs[d].chunk_ids]
                    chunks.delete(stale)
                    lines.delete_chunks(stale)
                    report.removed += len(stale)
                    for d in gone:
                        docs.pop(d)
                # Answer lines: the new documents', and those of documents an earlier run left searchable.
                todo = written + [(docs[d], None) for d in dict.fromkeys(unfinished)]
                self._write_lines(todo, meta, meta_store, catalog, chunks, lines)
                meta.pending = False
                meta_store.write(meta)
            elif before != (meta.embed_model, meta.chunking, meta.sources):
                meta_store.write(meta)
            index.invalidate()
            if docs:
                index.lexical()  # built and saved now, not on this process's first question
            report.changed_docs = [lf.doc_id for lf, _ in to_write]
            report.documents = len(docs)
            report.chunks_total = sum(d.chunks for d in docs.values())
        report.seconds = time.perf_counter() - started
        return report

    # -- stages ---------------------------------------------------------------------------
    def _write_searchable(self, to_write, docs: dict[str, DocumentRecord], redo_all: bool, meta: Meta,
                          report: IngestReport) -> list[tuple[DocumentRecord, list[Chunk]]]:
        """Upsert the documents' chunk vectors (encoded in batches across documents); each document's
        record is committed as searchable as soon as its last chunk is stored."""
        meta_store, catalog, chunks, lines = self.index.stores()
        plans = []
        for lf, new in to_write:
            old = docs.get(lf.doc_id)
            old_ids = old.chunk_ids if old else []
            stored = set() if redo_all else set(old_ids)
            # Texts embedded before (a document renamed, re-chunked or edited in one place) keep
            # their vectors: only new texts go through the encoder.
            if old_ids:
                self._reuse.update(self._stored_vectors(chunks, lines, old_ids))
            plans.append((lf, new, old_ids, [c for c in new if c.chunk_id not in stored]))
        fresh = [c for *_, f in plans for c in f]
        left = {lf.doc_id: len(f) for lf, _, _, f in plans}
        total = len(fresh)
        done = 0
        written: list[tuple[DocumentRecord, list[Chunk]]] = []
        if total:
            self._event("embedding", 0, total)  # before the first batch, which may also load the model

        def commit_finished() -> None:
            while len(written) < len(plans) and left[plans[len(written)][0].doc_id] == 0:
                lf, new, old_ids, _ = plans[len(written)]
                written.append((self._commit_searchable(lf, new, old_ids, redo_all, meta, report), new))
                self._event("searchable", len(written), len(plans), lf.doc_id)

        commit_finished()
        batch = max(self.settings.embed_batch_size, 16) * 4
        for start in range(0, total, batch):
            part = fresh[start : start + batch]
            chunks.upsert(part, self._encode([c.embed_text for c in part]))
            for c in part:
                left[c.doc_id] -= 1
            done += len(part)
            if self.progress:
                self.progress(done, total)
            self._event("embedding", done, total)
            commit_finished()
        report.added += total
        return written

    def _commit_searchable(self, lf: LoadedFile, new: list[Chunk], old_ids: list[str], redo_all: bool, meta: Meta,
                           report: IngestReport) -> DocumentRecord:
        """Commit one document's record as searchable, then delete what its previous version left."""
        meta_store, catalog, chunks, lines = self.index.stores()
        if redo_all:
            lines.delete_chunks([c.chunk_id for c in new])  # cut again with the current line rules
        m = lf.documents[0].metadata
        pages = [d.metadata.get("page") for d in lf.documents if d.metadata.get("page")]
        now = time.time()
        rec = DocumentRecord(
            doc_id=lf.doc_id, path=str(lf.path), content_hash=lf.content_hash, title=m["title"], kind=m["kind"],
            year=m.get("year"), publisher=m.get("publisher", "") or "", url=m.get("url", "") or "",
            pages=max(pages) if pages else None, chunk_ids=[c.chunk_id for c in new], state=SEARCHABLE,
            added_by=self.added_by, added_at=now, ingested_at=now,
        )
        catalog.put([rec])
        meta_store.bump(meta)
        self.index.invalidate()
        new_ids = set(rec.chunk_ids)
        stale = [i for i in old_ids if i not in new_ids]
        if stale:
            chunks.delete(stale)
            lines.delete_chunks(stale)
        report.removed += len(stale)
        return rec

    def _write_lines(self, todo, meta: Meta, meta_store, catalog, chunks, lines) -> None:
        """Encode and store the answer lines of the documents' chunks that lack them (in batches across
        documents); each document is committed as ready once its last chunk's lines are stored."""
        plans = []
        for rec, new in todo:
            have = lines.chunks_with_lines(rec.doc_id)
            if new is None:  # a document left searchable by an earlier run: its chunks from the store
                stored = chunks.get([c for c in rec.chunk_ids if c not in have])
                need = [(cid, rec.doc_id, m.get("section", ""), text) for cid, (text, m, _) in stored.items()]
            else:
                need = [(c.chunk_id, rec.doc_id, c.section, c.text) for c in new if c.chunk_id not in have]
            plans.append((rec, need))
        todo_rows = [row for _, need in plans for row in need]
        left = {rec.doc_id: len(need) for rec, need in plans}
        total = len(todo_rows)
        done, ready = 0, 0
        self._event("lines", 0, total)

        def commit_finished() -> None:
            nonlocal ready
            while ready < len(plans) and left[plans[ready][0].doc_id] == 0:
                rec = plans[ready][0]
                rec.state = READY
                rec.line_sum = lines.vector_sum(rec.doc_id)
                catalog.put([rec])
                meta_store.bump(meta)
                self.index.invalidate()
                ready += 1
                self._event("ready", ready, len(plans), rec.doc_id)

        commit_finished()
        batch = max(self.settings.embed_batch_size, 16) * 4
        for start in range(0, total, batch):
            part = todo_rows[start : start + batch]
            cut = [(cid, doc_id, section, split_lines(text)) for cid, doc_id, section, text in part]
            texts = [line_embed_text(section, ln) for _, _, section, ls in cut for ln in ls]
            vectors = self._encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
            per_doc: dict[str, dict] = {}
            at = 0
            for cid, doc_id, _, ls in cut:
                per_doc.setdefault(doc_id, {})[cid] = (ls, vectors[at : at + len(ls)])
                at += len(ls)
            for doc_id, out in per_doc.items():
                lines.save(doc_id, out)
                left[doc_id] -= len(out)
            done += len(part)
            self._event("lines", done, total)
            commit_finished()
        self._reuse = {}

    # -- helpers ----------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Passage vectors for texts; texts with a stored vector (see `_stored_vectors`) are not encoded again."""
        embeddings = self.index.embeddings
        reuse = self._reuse
        todo = [t for t in dict.fromkeys(texts) if t not in reuse]
        encoded = dict(zip(todo, embeddings.encode(todo, embeddings.passage_prefix))) if todo else {}
        return np.vstack([encoded[t] if t in encoded else reuse[t] for t in texts]).astype(np.float32)

    def _stored_vectors(self, chunks, lines, chunk_ids: list[str]) -> dict:
        """Embedded text -> its stored vector, for the chunks (and their answer lines) about to be
        replaced, so that re-ingesting unchanged text costs no forward pass."""
        known: dict = {}
        stored = chunks.get(chunk_ids, embeddings=True)
        for cid, (text, meta, vector) in stored.items():
            section = meta.get("section", "")
            known[f"{section}\n{text}" if section else text] = np.asarray(vector, dtype=np.float32)
        for cid, (ls, vectors) in lines.load(list(stored)).items():
            section = stored[cid][1].get("section", "")
            for line, vector in zip(ls, vectors):
                known[line_embed_text(section, line)] = vector
        return known

    def _remove_orphans(self, docs: dict[str, DocumentRecord], chunks, lines) -> None:
        """Delete chunks and lines an interrupted ingest left behind (no committed record lists them)."""
        keep = {cid for d in docs.values() for cid in d.chunk_ids}
        orphans = [i for i in chunks.all_ids() if i not in keep]
        chunks.delete(orphans)
        dropped = lines.delete_orphans(keep)
        if orphans or dropped:
            log.info("removed %d chunks and %d lines left by an interrupted ingest", len(orphans), dropped)

    def _scopes(self, resolver: SourceResolver, roots: list[Path]) -> list[tuple[str, Path, str]]:
        """(source key, source folder, path prefix) of each root: where ingest may remove documents."""
        scopes = []
        for root in roots:
            scope = resolver.scope(root)
            resolver.register(*scope[:2])
            scopes.append(scope)
        return scopes

    def _load(self, resolver: SourceResolver, roots: list[Path], known: dict[str, str] | None = None,
              ) -> tuple[list[LoadedFile], list[tuple[Path, str]]]:
        """Discover and load the files under `roots`, each identified by its source and path
        (rag.identity). A file whose bytes (and manifest entry) hash to its `known[doc_id]`
        is not parsed: it comes back without documents."""
        on_event = self.on_event
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
            self._event("files", number, len(files), path.name)
            folder = path.parent
            if folder not in manifests:
                manifests[folder] = read_manifest(folder)
            identity = resolver.identify(path)
            if identity.doc_id in by_id and by_id[identity.doc_id] == path:
                continue  # the same file named twice (`rag ingest corpus corpus/x.md`)
            if not _utf8(str(path)):  # Chroma stores only valid Unicode text
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
        self._event("files", len(files), len(files), "")
        return loaded, skipped


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
