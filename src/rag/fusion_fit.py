"""Fit the fusion weights on labelled tuning questions (`rag fit-fusion`).

For every answerable tuning case the three rankings (dense, BM25, best line) are computed
once. Reciprocal-rank weights are chosen on a grid by context recall (the share of the case's
facts in the fused top-k passages, averaged per dataset so each split counts alike); the
passage ranker (rag.fusion) is fit as a conditional logit whose positives are the candidates
holding a fact, its penalty chosen with each dataset held out in turn. Only tuning splits
belong here.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import conditional_logit
from .config import Settings
from .evaluation import fact_in, load_dataset
from .fusion import (
    MODEL_PATH,
    FusionModel,
    FusionWeights,
    as_json,
    forget_loaded_models,
    lexical_strength,
    passage_features,
)

log = logging.getLogger(__name__)

LEXICAL_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5)
LINE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0)
GATE_QUANTILES = (0.0, 0.25, 0.5, 0.75)
# L2 penalties of the passage ranker tried (conditional_logit's scale); the best out of fold is kept.
PENALTIES = (0.3, 3.0, 30.0)


@dataclass
class Rankings:
    """One case's three rankings, BM25 strength and which candidates hold which fact."""

    dataset: str
    dense: list
    lexical: list
    by_line: list
    strength: float
    holds: dict[str, set[int]]  # chunk id -> indices of the facts it holds
    facts: int


def collect(dataset: Path, corpus: Path, settings: Settings, work_dir: Path) -> list[Rankings]:
    """Index `corpus` (under work_dir) and compute each answerable case's rankings."""
    from .answering.questions import is_instruction
    from .answering.tuning import tuning_assistant

    assistant = tuning_assistant(corpus, settings, work_dir)
    local, index = assistant.settings, assistant.index
    searcher = assistant.searcher
    n = max(local.candidates, local.k)
    out = []
    for case in load_dataset(dataset):
        if not case.answerable or not case.facts or is_instruction(case.user_input):
            continue
        query, _ = assistant.standalone(case.user_input, case.history)
        vector = searcher.embed_query(query)
        dense = index.dense_search(vector, n)
        lexical = index.lexical().search(query, n)
        by_line = searcher.rank_by_line(dense, lexical, vector)
        strength = lexical_strength(lexical[0][1], searcher.question_idf(query)) if lexical else 0.0
        records = index.get_chunks({cid for cid, _ in dense + lexical})
        holds = {cid: {i for i, f in enumerate(case.facts) if fact_in(f, rec.text)} for cid, rec in records.items()}
        out.append(Rankings(Path(dataset).name, dense, lexical, by_line, strength, holds, len(case.facts)))
    index.close()
    return out


def _top(case: Rankings, model: FusionModel, rrf_k: int, k: int) -> list[str]:
    fused = model.fuse(case.dense, case.lexical, case.by_line, rrf_k, case.strength)
    dense_score = dict(case.dense)
    return sorted(fused, key=lambda cid: (-fused[cid], -dense_score.get(cid, 0.0), cid))[:k]


def context_recall(cases: list[Rankings], model: FusionModel, rrf_k: int, k: int) -> dict[str, float]:
    """Per dataset: mean share of facts found in the top-k passages."""
    per: dict[str, list[float]] = {}
    for c in cases:
        found = set().union(*(c.holds.get(cid, set()) for cid in _top(c, model, rrf_k, k)))
        per.setdefault(c.dataset, []).append(len(found) / c.facts)
    return {name: float(np.mean(v)) for name, v in per.items()}


def first_passage_hits(cases: list[Rankings], model: FusionModel, rrf_k: int) -> dict[str, float]:
    """Per dataset: share of cases whose first passage holds a fact (the reader quotes it most)."""
    per: dict[str, list[float]] = {}
    for c in cases:
        top = _top(c, model, rrf_k, 1)
        per.setdefault(c.dataset, []).append(float(bool(top and c.holds.get(top[0]))))
    return {name: float(np.mean(v)) for name, v in per.items()}


def _mean(per: dict[str, float]) -> float:
    return float(np.mean(list(per.values())))


def fit_weights(cases: list[Rankings], rrf_k: int, k: int) -> tuple[FusionWeights, dict[str, float]]:
    """The reciprocal-rank weights with the best mean (over datasets) context recall; ties go to
    the simpler setting (less BM25, less line weight, no gate)."""
    strengths = np.array([c.strength for c in cases])
    gates = sorted({round(float(np.quantile(strengths, q)), 4) if q else 0.0 for q in GATE_QUANTILES})
    results = []
    for lexical, line, gate in itertools.product(LEXICAL_WEIGHTS, LINE_WEIGHTS, gates):
        if not lexical and gate:
            continue
        weights = FusionWeights(1.0, lexical, line, gate)
        per = context_recall(cases, FusionModel(weights), rrf_k, k)
        results.append((_mean(per), -lexical, -line, -gate, weights, per))
    results.sort(key=lambda r: r[:4], reverse=True)
    return results[0][4], results[0][5]


def fit_ranker(cases: list[Rankings], penalty: float) -> dict:
    """The conditional logit over each case's candidate passages (positives: those holding a fact)."""
    groups = []
    for c in cases:
        ids, matrix = passage_features(c.dense, c.lexical, c.by_line, c.strength)
        groups.append((matrix, np.array([bool(c.holds.get(cid)) for cid in ids])))
    mean, scale = conditional_logit.standardisation([m for m, _ in groups])
    return conditional_logit.fit(groups, mean, scale, hidden=0, penalty=penalty)  # skips groups without a positive


def _out_of_fold(cases: list[Rankings], penalty: float, rrf_k: int, k: int, weights: FusionWeights):
    """Context recall and first-passage hits per dataset, each ranked by a ranker fit on the others."""
    recall, hits = {}, {}
    for held in sorted({c.dataset for c in cases}):
        model = FusionModel(weights, fit_ranker([c for c in cases if c.dataset != held], penalty))
        test = [c for c in cases if c.dataset == held]
        recall.update(context_recall(test, model, rrf_k, k))
        hits.update(first_passage_hits(test, model, rrf_k))
    return recall, hits


def fit(cases: list[Rankings], rrf_k: int, k: int) -> tuple[FusionModel, dict]:
    """Fit the RRF weights, then the passage ranker; the ranker ranks when, held out dataset by
    dataset, it is no worse than the RRF weights fit on everything on context recall and on
    first-passage hits, and better on one of them."""
    weights, rrf_recall = fit_weights(cases, rrf_k, k)
    rrf_hits = first_passage_hits(cases, FusionModel(weights), rrf_k)
    trials = []
    for penalty in PENALTIES:
        recall, hits = _out_of_fold(cases, penalty, rrf_k, k, weights)
        trials.append((_mean(recall) + _mean(hits), penalty, recall, hits))
    _, penalty, oof_recall, oof_hits = max(trials, key=lambda t: (t[0], t[1]))
    gains = (_mean(oof_recall) - _mean(rrf_recall), _mean(oof_hits) - _mean(rrf_hits))
    wins = min(gains) >= 0 and sum(gains) > 0  # a tie keeps the simpler RRF
    model = FusionModel(weights, fit_ranker(cases, penalty) if wins else None)
    dense_only = context_recall(cases, FusionModel(FusionWeights(1.0, 0.0, 0.0, 0.0)), rrf_k, k)

    def rounded(per: dict[str, float]) -> dict[str, float]:
        return {n: round(v, 4) for n, v in per.items()}

    return model, {
        "cases": len(cases),
        "method": "ranker" if wins else "rrf",
        "penalty": penalty,
        "context_recall": round(_mean(oof_recall if wins else rrf_recall), 4),
        "ranker_out_of_fold_context_recall_per_dataset": rounded(oof_recall),
        "ranker_out_of_fold_first_passage_hits_per_dataset": rounded(oof_hits),
        "rrf_context_recall_per_dataset": rounded(rrf_recall),
        "rrf_first_passage_hits_per_dataset": rounded(rrf_hits),
        "dense_only_context_recall": round(_mean(dense_only), 4),
        "dense_only_context_recall_per_dataset": rounded(dense_only),
        "rrf_k": rrf_k,
        "k": k,
    }


def fit_fusion(pairs: list[tuple[Path, Path]], settings: Settings, work_dir: Path, out: Path = MODEL_PATH) -> dict:
    """Collect rankings over (dataset, corpus) pairs, fit, write the model JSON; return what was fit."""
    cases: list[Rankings] = []
    for dataset, corpus in pairs:
        cases.extend(collect(dataset, corpus, settings, work_dir))
    model, info = fit(cases, settings.rrf_k, settings.k)
    info["sources"] = [f"{d} on {c}" for d, c in pairs]
    Path(out).write_text(as_json(model.weights, model.ranker, info), encoding="utf-8")
    forget_loaded_models()
    return {"weights": model.weights, "method": info["method"], "fit": info}
