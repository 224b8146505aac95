"""Move an index from before schema 4 (a SQLite catalog with the answer lines beside Chroma's chunk
vectors) into the Chroma collections, keeping every vector: nothing is encoded again.

Write order: lines, chunk metadata, catalog, meta record last (its presence makes the index);
the SQLite file is renamed to `catalog.sqlite.migrated` at the end, so a migration that stops
halfway runs again from the start on the next open (every write is an upsert)."""

from __future__ import annotations

import sqlite3
from contextlib import nullcontext

import numpy as np

from ..lines import Line
from . import local
from .answer_lines import LineStore
from .catalog import READY, SEARCHABLE, DocumentRecord
from .meta import Meta


def _rows(db: sqlite3.Connection, sql: str) -> list[tuple]:
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # a table or column an older schema lacks
        return []


def migrate(index, locked: bool = False) -> str | None:
    """Migrate the legacy catalog of `index`; a one-line message saying what was done."""
    path = index.catalog_path
    with nullcontext() if locked else index.write_lock():
        if not local.is_legacy_catalog(path):
            return None  # another process migrated it meanwhile
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                legacy = dict(_rows(db, "SELECT key, value FROM meta"))
                docs = _rows(db, "SELECT doc_id, path, content_hash, title, kind, year, publisher, url, pages, "
                                 "ingested_at FROM documents ORDER BY doc_id")
                chunk_rows = (_rows(db, "SELECT chunk_id, doc_id, ordinal, section, page, page_label FROM chunks "
                                        "ORDER BY doc_id, ordinal")
                              or [(*r, None) for r in _rows(db, "SELECT chunk_id, doc_id, ordinal, section, page "
                                                                "FROM chunks ORDER BY doc_id, ordinal")])
                line_rows = _rows(db, "SELECT chunk_id, position, text, is_item, vector FROM lines "
                                      "WHERE vector IS NOT NULL ORDER BY chunk_id, position")
                sources = dict(_rows(db, "SELECT source, root FROM sources"))
            finally:
                db.close()
        except sqlite3.DatabaseError:
            return None  # damaged: open() and `rag ingest --rebuild` say what to do
        index.invalidate()
        meta_store, catalog, chunks, lines = index.stores(create=True)
        if meta_store.read() is not None:
            raise_conflict(index)
        doc_of = {r[0]: r[1] for r in chunk_rows}
        grouped: dict[str, list] = {}
        for cid, position, text, is_item, blob in line_rows:
            if cid in doc_of:
                grouped.setdefault(cid, []).append((Line(position, text, bool(is_item)), np.frombuffer(blob, dtype=np.float16)))
        by_doc: dict[str, dict] = {}
        for cid, items in grouped.items():
            by_doc.setdefault(doc_of[cid], {})[cid] = ([ln for ln, _ in items], np.vstack([v for _, v in items]))
        for doc_id, per_chunk in by_doc.items():
            LineStore.save(lines, doc_id, per_chunk)
        titles = {d[0]: (d[3], d[4]) for d in docs}
        present = set(chunks.all_ids())
        ids, metas = [], []
        for cid, doc_id, ordinal, section, page, page_label in chunk_rows:
            if cid not in present or doc_id not in titles:
                continue
            meta = {"doc_id": doc_id, "ordinal": int(ordinal), "title": titles[doc_id][0], "kind": titles[doc_id][1],
                    "section": section, "page": page if page is not None else -1}
            if page_label is not None:
                meta["page_label"] = page_label
            ids.append(cid)
            metas.append(meta)
        for start in range(0, len(ids), 1000):
            chunks.collection.update(ids=ids[start : start + 1000], metadatas=metas[start : start + 1000])
        chunk_ids: dict[str, list[str]] = {}
        for cid, doc_id, *_ in chunk_rows:
            chunk_ids.setdefault(doc_id, []).append(cid)
        records = []
        for doc_id, path_, digest, title, kind, year, publisher, url, pages, ingested_at in docs:
            mine = chunk_ids.get(doc_id, [])
            complete = bool(mine) and all(c in grouped for c in mine)
            line_sum = (np.sum([v.astype(np.float32).sum(axis=0) for _, v in by_doc[doc_id].values()], axis=0).tolist()
                        if doc_id in by_doc else None)
            records.append(DocumentRecord(
                doc_id=doc_id, path=path_, content_hash=digest, title=title, kind=kind, year=year,
                publisher=publisher or "", url=url or "", pages=pages, chunk_ids=mine,
                state=READY if complete else SEARCHABLE, added_by=None, added_at=float(ingested_at or 0),
                ingested_at=float(ingested_at or 0), line_sum=line_sum,
            ))
        catalog.put(records)
        meta = Meta(
            embed_model=legacy.get("embed_model"), dimension=int(legacy.get("dimension") or 0),
            chunking=legacy.get("chunking"), sources=sources, pending=legacy.get("pending") == "1",
        )
        meta_store.bump(meta)
        path.rename(path.with_name(local.MIGRATED))
        index.invalidate()
    return (f"Migrated the index in {index.dir} ({len(records)} documents, {len(chunk_rows)} chunks, "
            f"{len(line_rows)} answer lines) from {local.CATALOG} into Chroma ({index.where}); "
            f"the old catalog is kept as {local.MIGRATED}.")


def raise_conflict(index) -> None:
    from ..errors import IndexMismatchError

    raise IndexMismatchError(
        f"{index.catalog_path} is an index from an earlier version, but {index.where} already holds an index; "
        f"move {local.CATALOG} away or run `rag ingest --rebuild`.",
        "Er staan twee indexen naast elkaar; bouw de index opnieuw op (rag ingest --rebuild).",
    )
