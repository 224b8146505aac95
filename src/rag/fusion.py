"""How dense, BM25 and best-line rankings are combined: weights fit on tuning questions.

Reciprocal-rank fusion of three rankings of the same candidates: dense (Chroma), BM25, and
the candidates ranked by their best stored answer line. BM25 helps when a question uses the
documents' own words and adds noise when it paraphrases them, so it counts only when its top
score is strong for the question (its score over the question's total IDF reaches
`lexical_gate`). The weights and the gate are data (`fusion_model.json`), refit by
`rag fit-fusion` (or `rag fit`) from the tuning splits; a RAG_*_WEIGHT setting overrides its
fitted value.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).with_name("fusion_model.json")


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the three rankings and the BM25 gate."""

    dense: float = 1.0
    lexical: float = 1.0
    line: float = 2.0
    lexical_gate: float = 0.0


@lru_cache(maxsize=4)
def _fitted(path: Path) -> FusionWeights:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return FusionWeights(**data["weights"])


def fusion_weights(settings, path: Path = MODEL_PATH) -> FusionWeights:
    """The fitted weights, with any weight the settings set explicitly in its place."""
    fitted = _fitted(Path(path)) if Path(path).is_file() else FusionWeights()
    return FusionWeights(
        dense=fitted.dense if settings.dense_weight is None else settings.dense_weight,
        lexical=fitted.lexical if settings.lexical_weight is None else settings.lexical_weight,
        line=fitted.line if settings.line_weight is None else settings.line_weight,
        lexical_gate=fitted.lexical_gate if settings.lexical_gate is None else settings.lexical_gate,
    )


def forget_loaded_models() -> None:
    """Drop the cached model file (after a refit)."""
    _fitted.cache_clear()


def fuse(dense, lexical, by_line, weights: FusionWeights, rrf_k: int, lexical_strength: float) -> dict[str, float]:
    """Fused score per candidate id from the three rankings ([(id, score)], best first)."""
    lexical_weight = weights.lexical if lexical_strength >= weights.lexical_gate else 0.0
    fused: dict[str, float] = {}
    for ranking, weight in ((dense, weights.dense), (lexical, lexical_weight), (by_line, weights.line)):
        if not weight:
            continue
        for rank, (cid, _) in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + weight / (rrf_k + rank)
    return fused


def lexical_strength(top_score: float, question_idf: float) -> float:
    """How strongly BM25 matched: its top score over the question's total IDF (0 without a match)."""
    return top_score / question_idf if question_idf > 0 else 0.0


def as_json(weights: FusionWeights, fit: dict) -> str:
    """The model file's text."""
    return json.dumps({"weights": asdict(weights), "fit": fit}, indent=1) + "\n"
