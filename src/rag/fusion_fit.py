"""Fit the fusion weights on labelled tuning questions (`rag fit-fusion`).

For every answerable tuning case the three rankings (dense, BM25, best line) are computed
once; every weight setting on the grid is then scored by context recall: the share of the
case's facts that occur in the fused top-k passages, averaged per dataset so each split
counts alike. Only tuning splits belong here.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Settings
from .evaluation import fact_in, load_dataset
from .fusion import MODEL_PATH, FusionWeights, as_json, forget_loaded_models, fuse, lexical_strength

log = logging.getLogger(__name__)

LEXICAL_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5)
LINE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0)
GATE_QUANTILES = (0.0, 0.25, 0.5, 0.75)


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


def context_recall(cases: list[Rankings], weights: FusionWeights, rrf_k: int, k: int) -> dict[str, float]:
    """Per dataset: mean share of facts found in the fused top-k."""
    per: dict[str, list[float]] = {}
    for c in cases:
        fused = fuse(c.dense, c.lexical, c.by_line, weights, rrf_k, c.strength)
        dense_score = dict(c.dense)
        top = sorted(fused, key=lambda cid: (-fused[cid], -dense_score.get(cid, 0.0), cid))[:k]
        found = set().union(*(c.holds.get(cid, set()) for cid in top)) if top else set()
        per.setdefault(c.dataset, []).append(len(found) / c.facts)
    return {name: float(np.mean(v)) for name, v in per.items()}


def fit(cases: list[Rankings], rrf_k: int, k: int) -> tuple[FusionWeights, dict]:
    """The grid point with the best mean (over datasets) context recall; ties go to the simpler
    setting (less BM25, less line weight, no gate)."""
    strengths = np.array([c.strength for c in cases])
    gates = sorted({round(float(np.quantile(strengths, q)), 4) if q else 0.0 for q in GATE_QUANTILES})
    results = []
    for lexical, line, gate in itertools.product(LEXICAL_WEIGHTS, LINE_WEIGHTS, gates):
        if not lexical and gate:
            continue
        weights = FusionWeights(1.0, lexical, line, gate)
        per = context_recall(cases, weights, rrf_k, k)
        results.append((float(np.mean(list(per.values()))), -lexical, -line, -gate, weights, per))
    results.sort(key=lambda r: r[:4], reverse=True)
    best = results[0]
    dense_only = context_recall(cases, FusionWeights(1.0, 0.0, 0.0, 0.0), rrf_k, k)
    return best[4], {
        "cases": len(cases),
        "context_recall": round(best[0], 4),
        "context_recall_per_dataset": {n: round(v, 4) for n, v in best[5].items()},
        "dense_only_context_recall": round(float(np.mean(list(dense_only.values()))), 4),
        "dense_only_context_recall_per_dataset": {n: round(v, 4) for n, v in dense_only.items()},
        "rrf_k": rrf_k,
        "k": k,
    }


def fit_fusion(pairs: list[tuple[Path, Path]], settings: Settings, work_dir: Path, out: Path = MODEL_PATH) -> dict:
    """Collect rankings over (dataset, corpus) pairs, fit, write the model JSON; return what was fit."""
    cases: list[Rankings] = []
    for dataset, corpus in pairs:
        cases.extend(collect(dataset, corpus, settings, work_dir))
    weights, info = fit(cases, settings.rrf_k, settings.k)
    info["sources"] = [f"{d} on {c}" for d, c in pairs]
    Path(out).write_text(as_json(weights, info), encoding="utf-8")
    forget_loaded_models()
    return {"weights": weights, "fit": info}
