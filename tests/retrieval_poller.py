"""Poll retrieval from a process of its own while a worker ingests, and log what it saw.

Run as `python retrieval_poller.py QUERY DOC_SUFFIX LOG STOP_FILE` with RAG_INDEX_DIR and
RAG_CORPUS_DIR set. Each poll opens the index afresh (a new embedded Chroma client, so it sees
whatever the worker has written so far) and appends one JSON line to LOG: the catalog's chunk
count for the document, how many of its passages retrieval returned, and how many of its
vectors the vector store holds (visible or not). Stops when STOP_FILE exists.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    query, suffix, log_path, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    from rag.config import Settings
    from rag.embeddings import get_embeddings
    from rag.index import Index
    from rag.retrieval import HybridSearcher

    settings = Settings()
    embeddings = get_embeddings(settings.embed_model, settings.embed_batch_size)
    with log_path.open("a", encoding="utf-8") as log:
        while not stop.exists():
            index = Index(settings, embeddings=embeddings)
            row: dict = {"t": time.time()}
            try:
                docs = [d for d in index.open().documents() if d["doc_id"].endswith(suffix)]
                row["documents"] = len(docs)
                row["doc_chunks"] = docs[0]["chunks"] if docs else 0
                doc_id = docs[0]["doc_id"] if docs else None
                row["catalog_rows"] = len(index.chunks_of(doc_id)) if doc_id else 0
                passages = HybridSearcher(index, settings).search(query, 10)
                row["hits"] = sum(p.doc_id.endswith(suffix) for p in passages)
                row["hit_doc_chunks"] = sorted({len(index.chunks_of(p.doc_id)) for p in passages
                                                if p.doc_id.endswith(suffix)})
                stored = index.collection().get(include=["metadatas"])
                row["raw_vectors"] = sum(str(m.get("doc_id", "")).endswith(suffix) for m in stored["metadatas"])
            except Exception as exc:  # noqa: BLE001 - logged: the test decides what counts
                row["error"] = f"{exc.__class__.__name__}: {exc}"[:300]
            finally:
                index.close()
                index.release_embedded()
            log.write(json.dumps(row) + "\n")
            log.flush()
            time.sleep(0.2)


if __name__ == "__main__":
    main()
