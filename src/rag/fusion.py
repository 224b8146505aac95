"""How dense, BM25 and best-line rankings are combined into one passage ranking: fitted on
tuning questions.

Every candidate passage (dense or BM25 found it) gets six features from the three rankings of
one question: its dense cosine and its best stored line's cosine, each relative to the best
candidate's and standardised within the question, and its BM25 score relative to the best,
alone and times how strongly BM25 matched the question at all (top score over the
question's total IDF: BM25 helps when a question uses the documents' own words and adds
noise when it paraphrases them). A conditional logit fit by `rag fit-fusion` (or `rag fit`)
on the tuning splits weighs them (`fusion_model.json`).

Reciprocal-rank fusion with fitted weights is kept beside it: it ranks when a RAG_*_WEIGHT
setting is set (that setting in place of its fitted value), for the dense/lexical modes, and
when the model file has no ranker.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import conditional_logit

log = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).with_name("fusion_model.json")

FEATURES = ("dense_gap", "line_gap", "bm25_share", "bm25_share_x_strength", "dense_z", "line_z")


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the three rankings and the BM25 gate (reciprocal-rank fusion)."""

    dense: float = 1.0
    lexical: float = 1.0
    line: float = 2.0
    lexical_gate: float = 0.0


@dataclass(frozen=True)
class FusionModel:
    """How passages are ranked: the learned ranker when there is one, else RRF with `weights`."""

    weights: FusionWeights
    ranker: dict | None = None  # conditional_logit model: mean, scale, coef

    @property
    def uses_lines(self) -> bool:
        """Whether the best-line ranking is needed at all."""
        return self.ranker is not None or bool(self.weights.line)

    def fuse(self, dense, lexical, by_line, rrf_k: int, strength: float) -> dict[str, float]:
        """Score per candidate id (higher ranks first) from the three rankings ([(id, score)], best first)."""
        if self.ranker is None:
            return fuse(dense, lexical, by_line, self.weights, rrf_k, strength)
        ids, matrix = passage_features(dense, lexical, by_line, strength)
        if not ids:
            return {}
        s = conditional_logit.scores(matrix, self.ranker)
        p = np.exp(s - s.max())
        return dict(zip(ids, (p / p.sum()).tolist()))  # a share of the question's candidates, for display


def passage_features(dense, lexical, by_line, strength: float) -> tuple[list[str], np.ndarray]:
    """The candidates (dense first, then BM25-only) and their FEATURES rows."""
    ids = list(dict.fromkeys([cid for cid, _ in dense] + [cid for cid, _ in lexical]))
    if not ids:
        return [], np.zeros((0, len(FEATURES)))
    dense_cos = _filled(dict(dense), ids, dense)
    line_cos = _filled(dict(by_line), ids, by_line)
    bm25 = dict(lexical)
    top_bm25 = lexical[0][1] if lexical and lexical[0][1] > 0 else 1.0
    share = np.array([bm25.get(cid, 0.0) / top_bm25 for cid in ids])
    rows = np.column_stack([
        dense_cos - dense_cos.max(), line_cos - line_cos.max(), share, share * strength,
        _within(dense_cos, dense), _within(line_cos, by_line),
    ])
    return ids, rows


def _filled(scores: dict, ids: list[str], ranking) -> np.ndarray:
    """Each candidate's score; one the ranking did not return scores just under its last."""
    floor = (ranking[-1][1] - 0.01) if ranking else 0.0
    return np.array([scores.get(cid, floor) for cid in ids], dtype=float)


def _within(values: np.ndarray, ranking) -> np.ndarray:
    """Values standardised by the ranking's own mean and spread (how far above the pack)."""
    returned = np.array([s for _, s in ranking] or [0.0], dtype=float)
    return (values - returned.mean()) / (returned.std() + 1e-3)


@lru_cache(maxsize=4)
def _fitted(path: Path) -> FusionModel:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    ranker = data.get("ranker")
    if ranker is not None:
        if tuple(ranker["features"]) != FEATURES:
            raise ValueError(f"{path} was fit on other features; run `rag fit-fusion`")
        ranker = {key: np.asarray(ranker[key], dtype=float) for key in ("mean", "scale", "coef")}
    return FusionModel(FusionWeights(**data["weights"]), ranker)


def fusion_model(settings, path: Path = MODEL_PATH) -> FusionModel:
    """The fitted model; with any weight the settings set explicitly, RRF with that weight in place."""
    fitted = _fitted(Path(path)) if Path(path).is_file() else FusionModel(FusionWeights())
    overrides = {"dense": settings.dense_weight, "lexical": settings.lexical_weight, "line": settings.line_weight,
                 "lexical_gate": settings.lexical_gate}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if not overrides:
        return fitted
    return FusionModel(FusionWeights(**{**asdict(fitted.weights), **overrides}))


def forget_loaded_models() -> None:
    """Drop the cached model file (after a refit)."""
    _fitted.cache_clear()


def fuse(dense, lexical, by_line, weights: FusionWeights, rrf_k: int, lexical_strength: float) -> dict[str, float]:
    """Reciprocal-rank fused score per candidate id from the three rankings ([(id, score)], best first)."""
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


def as_json(weights: FusionWeights, ranker: dict | None, fit: dict) -> str:
    """The model file's text."""
    data: dict = {"weights": asdict(weights)}
    if ranker is not None:
        data["ranker"] = {"features": list(FEATURES),
                          **{key: [round(float(x), 6) for x in ranker[key]] for key in ("mean", "scale", "coef")}}
    data["fit"] = fit
    return json.dumps(data, indent=1) + "\n"
