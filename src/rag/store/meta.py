"""The generation marker and what the index was built with, in `<name>-meta`.

One record, id `index`: its metadata holds `generation` (bumped on every committed change of
the catalog) and `index_id` (a random id given at creation, so caches of a rebuilt or another
index never match); its document holds the rest as JSON (embedding model, dimension, chunking
signature, schema version, the known sources, and `pending` while a write is under way).
Processes compare `key()` with the key their caches were built for; that read is one small get.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from .client import NO_VECTOR

SCHEMA_VERSION = 4  # 4: everything in Chroma (catalog, chunks, lines, meta); 3 was the SQLite catalog
RECORD_ID = "index"


@dataclass
class Meta:
    """What the meta record holds."""

    index_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    generation: int = 0
    embed_model: str | None = None
    dimension: int = 0
    chunking: str | None = None
    schema_version: int = SCHEMA_VERSION
    sources: dict[str, str] = field(default_factory=dict)
    pending: bool = False

    @property
    def key(self) -> str:
        return f"{self.index_id}:{self.generation}"


class MetaStore:
    """Read and write the meta record of one index."""

    def __init__(self, collection):
        self.collection = collection

    def key(self) -> str | None:
        """`index_id:generation`, or None when the index has no meta record (the cheap check)."""
        got = self.collection.get(ids=[RECORD_ID], include=["metadatas"])
        if not got["ids"]:
            return None
        meta = got["metadatas"][0] or {}
        return f"{meta.get('index_id')}:{meta.get('generation')}"

    def read(self) -> Meta | None:
        got = self.collection.get(ids=[RECORD_ID], include=["metadatas", "documents"])
        if not got["ids"]:
            return None
        data = json.loads(got["documents"][0] or "{}")
        marks = got["metadatas"][0] or {}
        return Meta(
            index_id=str(marks.get("index_id") or data.get("index_id") or uuid.uuid4().hex),
            generation=int(marks.get("generation") or 0),
            embed_model=data.get("embed_model"),
            dimension=int(data.get("dimension") or 0),
            chunking=data.get("chunking"),
            schema_version=int(data.get("schema_version") or SCHEMA_VERSION),
            sources=dict(data.get("sources") or {}),
            pending=bool(data.get("pending")),
        )

    def write(self, meta: Meta) -> None:
        document = {
            "embed_model": meta.embed_model, "dimension": meta.dimension, "chunking": meta.chunking,
            "schema_version": meta.schema_version, "sources": meta.sources, "pending": meta.pending,
        }
        self.collection.upsert(
            ids=[RECORD_ID], embeddings=[NO_VECTOR], documents=[json.dumps(document)],
            metadatas=[{"index_id": meta.index_id, "generation": meta.generation}],
        )

    def bump(self, meta: Meta) -> Meta:
        """Write `meta` with the next generation (the commit point of a catalog change)."""
        current = self.read()
        meta.generation = max(meta.generation, current.generation if current else 0) + 1
        self.write(meta)
        return meta
