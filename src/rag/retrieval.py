"""Hybrid search: dense (Chroma) + BM25 + best-line ranking, fused by the fitted passage ranker -> Passages."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from langchain_core.documents import Document

from .config import MAX_K, Settings
from .errors import ConfigError, QuestionError
from .fusion import FusionModel, FusionWeights, fusion_model, lexical_strength
from .identity import doc_name
from .lexical import content_words
from .store import Index


@dataclass
class Passage:
    """A retrieved chunk with where it came from and why it ranked."""

    chunk_id: str
    doc_id: str
    title: str
    kind: str
    section: str
    page: int | None
    text: str
    score: float
    dense_score: float | None = None
    lexical_score: float | None = None
    dense_rank: int | None = None
    lexical_rank: int | None = None
    url: str = ""
    page_label: str | None = None

    @classmethod
    def from_record(cls, rec, score: float, **ranks) -> "Passage":
        """A Passage for a catalog ChunkRecord, with its fused score and per-retriever ranks/scores."""
        return cls(
            chunk_id=rec.chunk_id, doc_id=rec.doc_id, title=rec.title, kind=rec.kind, section=rec.section,
            page=rec.page, text=rec.text, score=score, url=rec.url or "", page_label=rec.page_label, **ranks,
        )

    @property
    def name(self) -> str:
        """The document's readable name (path within its source, no suffix; see rag.identity)."""
        return doc_name(self.doc_id)

    def as_dict(self) -> dict:
        return asdict(self)

    def to_document(self) -> Document:
        meta = {k: v for k, v in asdict(self).items() if k != "text"}
        return Document(page_content=self.text, metadata=meta)


def check_k(k: int) -> int:
    """Validate the number of passages asked for."""
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise ConfigError(
            f"k must be between 1 and {MAX_K}, got {k}.",
            f"Het aantal passages moet tussen 1 en {MAX_K} liggen.",
        )
    return k


class HybridSearcher:
    """Dense + lexical retrieval over one Index."""

    def __init__(self, index: Index, settings: Settings | None = None):
        self.index = index
        self.settings = settings or index.settings

    def embed_query(self, query: str) -> np.ndarray:
        """The query's vector, as `search` uses it (pass it back to avoid a second forward pass)."""
        return self.index.embeddings.encode([query], self.index.embeddings.query_prefix)[0]

    def search(
        self, query: str, k: int | None = None, mode: str | None = None, vector: np.ndarray | None = None
    ) -> list[Passage]:
        """Top-k passages for a query (mode: hybrid = fused, see rag.fusion | dense | lexical).

        `vector` is the query's embedding when the caller already has it (see `embed_query`)."""
        query = (query or "").strip()
        if not query:
            raise QuestionError("The question is empty.", "Stel een vraag.")
        k = check_k(self.settings.k if k is None else k)
        self.index.refresh()  # another process may have committed a change (cheap, throttled)
        mode = mode or self.settings.retrieval_mode
        n = max(self.settings.candidates, k)
        dense: list[tuple[str, float]] = []
        lexical: list[tuple[str, float]] = []
        if mode in ("hybrid", "dense"):
            if vector is None:
                vector = self.embed_query(query)
            dense = self.index.dense_search(vector, n)
        if mode in ("hybrid", "lexical"):
            lexical = self.index.lexical().search(query, n)
        model = fusion_model(self.settings) if mode == "hybrid" else FusionModel(FusionWeights(1.0, 1.0, 0.0, 0.0))
        by_line = self.rank_by_line(dense, lexical, vector) if mode == "hybrid" and model.uses_lines else []
        strength = lexical_strength(lexical[0][1], self.question_idf(query)) if lexical else 0.0
        return self._fuse(dense, lexical, k, by_line, model, strength)

    def question_idf(self, query: str) -> float:
        lex = self.index.lexical()
        return sum(max(lex.idf(token), 0.1) for token in content_words(query))

    def rank_by_line(self, dense, lexical, vector: np.ndarray) -> list[tuple[str, float]]:
        """The candidates ranked by their best answer line's similarity to the query. A user's
        question usually matches one sentence better than a whole chunk (paraphrases above all);
        the line vectors are stored at ingest, so this costs no forward pass."""
        candidates = list(dict.fromkeys([cid for cid, _ in dense] + [cid for cid, _ in lexical]))
        query = np.asarray(vector, dtype=np.float32)
        best = []
        for cid, (_, vectors) in self.index.lines_for(candidates).items():
            if len(vectors):
                best.append((cid, float((np.asarray(vectors, dtype=np.float32) @ query).max())))
        return sorted(best, key=lambda item: -item[1])

    def _fuse(self, dense, lexical, k: int, by_line, model: FusionModel, strength: float) -> list[Passage]:
        fused = model.fuse(dense, lexical, by_line, self.settings.rrf_k, strength)
        info: dict[str, dict] = {}
        for rank, (cid, sim) in enumerate(dense, start=1):
            info.setdefault(cid, {}).update(dense_score=sim, dense_rank=rank)
        for rank, (cid, bm25) in enumerate(lexical, start=1):
            info.setdefault(cid, {}).update(lexical_score=bm25, lexical_rank=rank)
        for cid in fused:
            info.setdefault(cid, {})
        # Ties (e.g. identical ranks) break on dense similarity, then id, to stay deterministic.
        order = sorted(fused, key=lambda c: (-fused[c], -(info[c].get("dense_score") or 0.0), c))
        records = self.index.get_chunks(order[: k * 3])  # the catalog hides half-written chunks
        passages: list[Passage] = []
        for cid in order:
            rec = records.get(cid)
            if rec is None:
                continue
            passages.append(Passage.from_record(rec, round(fused[cid], 6), **info[cid]))
            if len(passages) == k:
                break
        return passages


def _hybrid_retriever_class():
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.retrievers import BaseRetriever

    class HybridRetriever(BaseRetriever):
        """LangChain retriever over the hybrid searcher (for chains and users' own code)."""

        searcher: HybridSearcher
        k: int = 5

        model_config = {"arbitrary_types_allowed": True}

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            return [p.to_document() for p in self.searcher.search(query, self.k)]

    HybridRetriever.__module__, HybridRetriever.__qualname__ = __name__, "HybridRetriever"
    return HybridRetriever


def __getattr__(name: str):
    # `HybridRetriever` is built on first use: LangChain's retriever base pulls in langsmith,
    # ~0.35 s of imports that answering a question (`rag ask`, the app) does not need.
    if name == "HybridRetriever":
        cls = globals()["HybridRetriever"] = _hybrid_retriever_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
