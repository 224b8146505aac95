"""Chunk vectors in `<name>`: id = chunk id, the text as the document, metadata for display.

The collection may hold chunks no committed catalog record lists (an ingest under way or
killed); readers filter by the catalog, and the next ingest deletes them (`orphans`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..chunking import Chunk
from ..identity import doc_name
from .client import batched

GET_BATCH = 500


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


def chunk_metadata(chunk: Chunk) -> dict:
    meta = {
        "doc_id": chunk.doc_id,
        "ordinal": chunk.ordinal,
        "title": chunk.metadata.get("title", ""),
        "kind": chunk.metadata.get("kind", ""),
        "section": chunk.section,
        "page": chunk.page if chunk.page is not None else -1,
    }
    if chunk.page_label is not None:
        meta["page_label"] = chunk.page_label
    return meta


class ChunkStore:
    """Write, read and search chunk vectors."""

    def __init__(self, collection):
        self.collection = collection

    def upsert(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        self.collection.upsert(
            ids=[c.chunk_id for c in chunks],
            embeddings=vectors,
            documents=[c.text for c in chunks],
            metadatas=[chunk_metadata(c) for c in chunks],
        )

    def query(self, vector, n: int) -> list[tuple[str, float]]:
        """Top-n (chunk_id, cosine similarity), committed or not."""
        result = self.collection.query(
            query_embeddings=[list(map(float, vector))], n_results=max(1, n), include=["distances"]
        )
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0])]

    def get(self, ids: list[str], embeddings: bool = False) -> dict[str, tuple[str, dict, object]]:
        """chunk_id -> (text, metadata, vector or None) for the ids that are stored."""
        out: dict[str, tuple[str, dict, object]] = {}
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        for part in batched(list(ids), GET_BATCH):
            got = self.collection.get(ids=part, include=include)
            vectors = got["embeddings"] if embeddings else [None] * len(got["ids"])
            for cid, text, meta, vector in zip(got["ids"], got["documents"], got["metadatas"], vectors):
                out[cid] = (text or "", meta or {}, vector)
        return out

    def count(self) -> int:
        return self.collection.count()

    def all_ids(self) -> list[str]:
        return self.collection.get(include=[])["ids"]

    def delete(self, ids: list[str]) -> None:
        for part in batched(list(ids), 5000):
            self.collection.delete(ids=part)


def record(chunk_id: str, text: str, meta: dict, doc) -> ChunkRecord:
    """A ChunkRecord from a stored chunk and its document's catalog record."""
    page = meta.get("page")
    return ChunkRecord(
        chunk_id=chunk_id, doc_id=meta.get("doc_id", doc.doc_id), ordinal=int(meta.get("ordinal", 0)),
        section=meta.get("section", ""), page=None if page in (None, -1) else int(page), text=text,
        title=doc.title, kind=doc.kind, year=doc.year, url=doc.url or "", page_label=meta.get("page_label"),
    )
