"""Fit the refusal model on labelled tuning cases (`rag fit-refusal`).

Each (dataset, corpus) pair is indexed under `work_dir`, every case is analysed by the
real Assistant (retrieval, answer lines, features), and a logistic regression on
standardised features is fit. The threshold comes from the cost on out-of-fold probabilities
(5-fold, repeated over shuffles; a missed refusal costs MISSED_REFUSAL_COST false refusals): the
lowest point of the smoothed cost curve, then the most cautious threshold whose cost is within
one standard error of it, so the operating point is not chosen on probabilities the model was
fit on, nor on noise between near-equal thresholds. Only tuning splits belong here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Settings
from ..evaluation import load_dataset
from .questions import is_instruction
from .refusal import FEATURES, MODEL_PATH, background_questions, embed_background, forget_loaded_models
from .tuning import tuning_assistant

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One labelled case: its features and whether the sources answer it."""

    case_id: str
    values: dict[str, float]
    answerable: bool


def collect(dataset: Path, corpus: Path, settings: Settings, work_dir: Path) -> list[Row]:
    """Index `corpus` (incrementally, under work_dir) and compute features for every case."""
    assistant = tuning_assistant(corpus, settings, work_dir)
    index = assistant.index
    rows = []
    for case in load_dataset(dataset):
        if is_instruction(case.user_input):
            continue  # refused by rule, not by the model
        a = assistant.analyse(case.user_input, case.history)
        rows.append(Row(case.id, a.features, case.answerable))
    index.close()
    return rows


# Cost of answering a question the sources do not answer, in refused answerable questions. At 1.0
# the threshold maximises accuracy on the tuning cases; above it the assistant is more cautious.
# 1.5 because a wrong answer (a wrong number under a citation) is worse than no answer (DESIGN.md),
# and because the share of unanswerable tuning questions (~22%) is a choice of whoever wrote
# them, not what users ask: the classes are weighted equally in the fit for the same reason.
MISSED_REFUSAL_COST = 1.5
# Shuffled 5-fold splits the threshold is chosen over, and the half-width (in 0.01 steps) of
# the moving average over the threshold grid.
REPEATS = 5
SMOOTHING = 5


def _case_costs(answers: np.ndarray, answerable: np.ndarray) -> np.ndarray:
    """Each case's cost: MISSED_REFUSAL_COST for an answered unanswerable case, 1 for a refused answerable one."""
    return MISSED_REFUSAL_COST * (answers & (answerable == 0)) + (~answers & (answerable == 1))


def _cautious_end(case_costs: np.ndarray, at: int) -> int:
    """The highest threshold index whose cost is within one standard error of the cost at `at`
    (the one-standard-error rule, with the error of the paired per-case difference): the cost
    curve of a weak model is flat over a range of thresholds, and where they tie, a refusal is
    the better mistake (DESIGN.md). `case_costs` is thresholds x cases."""
    chosen = at
    for j in range(at + 1, len(case_costs)):
        difference = case_costs[j] - case_costs[at]
        if difference.sum() <= difference.std(ddof=1) * np.sqrt(len(difference)):
            chosen = j
    return chosen


def fit(rows: list[Row], sources: list[str]) -> dict:
    """Logistic regression; threshold with the lowest (smoothed, repeated) cost on out-of-fold probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([[r.values[f] for f in FEATURES] for r in rows], dtype=float)
    y = np.array([r.answerable for r in rows], dtype=int)
    if len(set(y)) < 2:
        raise ValueError("the tuning cases need both answerable and unanswerable questions")

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000, class_weight="balanced"))

    # Out-of-fold probabilities from several shuffles; the cost curve is averaged over them and
    # smoothed to find its low plateau rather than a dip that a single split happens to show;
    # the threshold is that plateau's cautious end (`_cautious_end`).
    splits = min(5, int(min(np.bincount(y))))
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    case_costs = []
    accuracies = []
    for seed in range(REPEATS):
        folds = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
        out_of_fold = cross_val_predict(model(), x, y, cv=folds, method="predict_proba")[:, 1]
        case_costs.append([_case_costs(out_of_fold >= t, y) for t in grid])
        accuracies.append([float(np.mean((out_of_fold >= t) == y)) for t in grid])
    case_costs = np.mean(case_costs, axis=0)
    window = np.ones(2 * SMOOTHING + 1) / (2 * SMOOTHING + 1)
    smoothed = np.convolve(np.pad(case_costs.sum(axis=1), SMOOTHING, mode="edge"), window, mode="valid")
    at = _cautious_end(case_costs, int(np.argmin(smoothed)))
    threshold = float(grid[at])
    best = float(np.mean(accuracies, axis=0)[at])
    fitted = model().fit(x, y)
    scaler, logistic = fitted[0], fitted[1]
    return {
        "features": list(FEATURES),
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": logistic.coef_[0].tolist(),
        "intercept": float(logistic.intercept_[0]),
        "threshold": threshold,
        "fit": {
            "cases": len(rows),
            "answerable": int(y.sum()),
            "unanswerable": int(len(y) - y.sum()),
            "out_of_fold_accuracy": round(best, 4),
            "sources": sources,
        },
    }


def fit_refusal(pairs: list[tuple[Path, Path]], settings: Settings, work_dir: Path, out: Path = MODEL_PATH) -> dict:
    """Collect features over (dataset, corpus) pairs, fit, write the model JSON; return it."""
    rows: list[Row] = []
    for dataset, corpus in pairs:
        found = collect(dataset, corpus, settings, work_dir)
        log.info("%s: %d cases", dataset, len(found))
        rows.extend(found)
    from ..embeddings import get_embeddings

    model = fit(rows, [f"{d} on {c}" for d, c in pairs])
    embeddings = get_embeddings(settings.embed_model, settings.embed_batch_size)
    model["fit"]["embed_model"] = embeddings.model_name
    # The topic_contrast feature was computed from this vector (refusal.background_vector).
    model["background"] = [round(float(x), 6) for x in embed_background(embeddings)]
    model["background_sha256"] = background_questions()[1]
    Path(out).write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    forget_loaded_models()
    return model
