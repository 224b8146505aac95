"""The document catalog in `<name>-documents`: one record per document, id = doc_id.

A record is the commit point of a document: its chunks and lines may be written before it, but
only the chunk ids listed in a committed record are retrievable (see `Index.view`). `state` is
`searchable` (chunks committed, answer lines still being made) or `ready`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .client import NO_VECTOR, batched

SEARCHABLE = "searchable"
READY = "ready"


@dataclass
class DocumentRecord:
    """A document as the catalog keeps it."""

    doc_id: str
    path: str
    content_hash: str
    title: str
    kind: str
    year: int | None = None
    publisher: str = ""
    url: str = ""
    pages: int | None = None
    chunk_ids: list[str] = field(default_factory=list)
    state: str = SEARCHABLE
    added_by: str | None = None
    added_at: float = 0.0
    ingested_at: float = 0.0
    # The sum of the document's answer-line vectors (for the corpus centroid); None until ready.
    line_sum: list[float] | None = None

    @property
    def chunks(self) -> int:
        return len(self.chunk_ids)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "DocumentRecord":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class Catalog:
    """Read and write document records."""

    def __init__(self, collection):
        self.collection = collection

    def all(self) -> dict[str, DocumentRecord]:
        got = self.collection.get(include=["documents"])
        records = [DocumentRecord.from_json(text) for text in got["documents"]]
        return {r.doc_id: r for r in sorted(records, key=lambda r: r.doc_id)}

    def put(self, records: list[DocumentRecord]) -> None:
        for part in batched(records, 100):
            self.collection.upsert(
                ids=[r.doc_id for r in part],
                embeddings=[NO_VECTOR] * len(part),
                documents=[r.to_json() for r in part],
                metadatas=[{"state": r.state, "content_hash": r.content_hash} for r in part],
            )

    def delete(self, doc_ids: list[str]) -> None:
        for part in batched(list(doc_ids), 100):
            self.collection.delete(ids=part)

    def with_hash(self, content_hash: str) -> list[str]:
        """Ids of documents with these exact bytes (a duplicate under another name)."""
        return self.collection.get(where={"content_hash": content_hash}, include=[])["ids"]
