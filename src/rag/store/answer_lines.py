"""Answer lines with their vectors in `<name>-lines`: id = `<chunk id>#<position>`.

Vectors are rounded to float16 before they are stored (as the SQLite catalog did): cosine
differences stay below 1e-3 and the figures match indexes built before."""

from __future__ import annotations

import numpy as np

from ..lines import Line
from .client import batched

_WHERE_BATCH = 200


def line_id(chunk_id: str, position: int) -> str:
    return f"{chunk_id}#{position}"


def rounded(vectors) -> np.ndarray:
    return np.asarray(vectors, dtype=np.float16).astype(np.float32)


class LineStore:
    """Write and read the answer lines of chunks."""

    def __init__(self, collection):
        self.collection = collection

    def save(self, doc_id: str, lines: dict[str, tuple[list[Line], np.ndarray]]) -> None:
        """Store the lines of these chunks (chunk_id -> (lines, vectors)), replacing earlier ones."""
        self.delete_chunks([cid for cid, (ls, _) in lines.items()])
        ids, vectors, texts, metas = [], [], [], []
        for cid, (ls, vs) in lines.items():
            for line, vector in zip(ls, rounded(vs) if len(ls) else []):
                ids.append(line_id(cid, line.position))
                vectors.append(vector)
                texts.append(line.text)
                metas.append({"chunk_id": cid, "doc_id": doc_id, "position": line.position, "is_item": line.is_item})
        for start in range(0, len(ids), 2000):
            end = start + 2000
            self.collection.upsert(ids=ids[start:end], embeddings=np.vstack(vectors[start:end]),
                                   documents=texts[start:end], metadatas=metas[start:end])

    def load(self, chunk_ids: list[str]) -> dict[str, tuple[list[Line], np.ndarray]]:
        """Stored lines and vectors per chunk id (chunks without stored lines are left out)."""
        grouped: dict[str, list] = {}
        for part in batched(list(dict.fromkeys(chunk_ids)), _WHERE_BATCH):
            where = {"chunk_id": {"$in": part}} if len(part) > 1 else {"chunk_id": part[0]}
            got = self.collection.get(where=where, include=["documents", "metadatas", "embeddings"])
            for text, meta, vector in zip(got["documents"], got["metadatas"], got["embeddings"]):
                grouped.setdefault(meta["chunk_id"], []).append((int(meta["position"]), text, bool(meta["is_item"]), vector))
        out: dict[str, tuple[list[Line], np.ndarray]] = {}
        for cid, rows in grouped.items():
            rows.sort(key=lambda r: r[0])
            out[cid] = ([Line(p, t, i) for p, t, i, _ in rows], np.asarray([r[3] for r in rows], dtype=np.float32))
        return out

    def chunks_with_lines(self, doc_id: str) -> set[str]:
        """Which chunks of a document have stored lines (no vectors read)."""
        got = self.collection.get(where={"doc_id": doc_id}, include=["metadatas"])
        return {m["chunk_id"] for m in got["metadatas"]}

    def vector_sum(self, doc_id: str) -> list[float] | None:
        """The sum of a document's line vectors (for the corpus centroid)."""
        got = self.collection.get(where={"doc_id": doc_id}, include=["embeddings"])
        if not len(got["ids"]):
            return None
        return np.asarray(got["embeddings"], dtype=np.float32).sum(axis=0).tolist()

    def delete_chunks(self, chunk_ids: list[str]) -> None:
        for part in batched(list(chunk_ids), _WHERE_BATCH):
            if part:
                self.collection.delete(where={"chunk_id": {"$in": part}} if len(part) > 1 else {"chunk_id": part[0]})

    def delete_orphans(self, keep: set[str]) -> int:
        """Delete lines of chunks not in `keep`; the number deleted."""
        got = self.collection.get(include=["metadatas"])
        gone = [i for i, m in zip(got["ids"], got["metadatas"]) if m.get("chunk_id") not in keep]
        for part in batched(gone, 5000):
            self.collection.delete(ids=part)
        return len(gone)
