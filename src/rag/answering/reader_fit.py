"""Fit the learned reader on labelled tuning questions (`rag fit-reader`).

Each (dataset, corpus) pair is indexed under `work_dir` and every answerable case is
analysed by the real Assistant (follow-up condensing, retrieval, candidate lines and their
features). A candidate line is a positive when it holds one of the case's facts (facts are
copied verbatim from one line, see evals/README.md); the other lines of the retrieved
passages are its negatives. The model is a conditional logit (a softmax over one question's
lines, L2-regularised), linear, or linear plus a small tanh layer, chosen by out-of-fold
fact recall with each dataset held out in turn. The selection rule (how close to the best
line another line must score to be quoted too) is then chosen on those out-of-fold scores.
Only tuning splits belong here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import conditional_logit
from ..config import Settings
from ..evaluation import EvalCase, fact_in, fact_share, load_dataset
from . import reader
from .extractive import Candidate, choose_lines, compose_answer
from .questions import is_instruction
from .tuning import tuning_assistant

log = logging.getLogger(__name__)

# L2 penalties and hidden sizes tried; the best by out-of-fold recall@1 is kept.
PENALTIES = (0.1, 1.0, 10.0)
HIDDEN_SIZES = (0, 8)
# A hidden layer is kept only when it beats the best linear model by this much out of fold
# (about six tuning questions): a smaller gain is within what a refit's seed moves.
HIDDEN_MIN_GAIN = 0.01
# Selection rules tried on out-of-fold scores (score units: the model's logits).
MARGINS = (0.25, 0.5, 1.0, 1.5, 2.0)
OTHER_MARGINS = (0.0, 0.25, 0.5, 1.0)
LIST_MARGINS = (1.0, 2.0, 4.0)
MAX_LINES = (1, 2, 3, 4)
# Neighbours of the best line tried on top of the best rule: (lines after, lines before, length cap).
NEIGHBOURS = tuple((after, before, chars) for after in (0, 1, 2) for before in (0, 1) for chars in (150, 200, 250, 300, 400)
                   if after or before)
# Answer length (the composed answer's characters) weighs against recall: 0.05 recall per 100
# characters; and no rule may make the median answer of a tuning file longer than this.
LENGTH_COST = 0.0005
MAX_MEDIAN_CHARS = 400


@dataclass
class Question:
    """One labelled question: its candidate lines, their features and which hold a fact."""

    dataset: str
    case_id: str
    question: str
    facts: list[str]
    candidates: list[Candidate]
    matrix: np.ndarray
    labels: np.ndarray
    budget: int = 700
    passages: list = field(default_factory=list)  # the retrieved passages the candidates come from
    scores: np.ndarray = field(default=None)  # out-of-fold scores, set by `fit`


@dataclass
class AnalysedCase:
    """One answerable tuning case as the Assistant reads it: the question made to stand alone,
    its passages, candidate lines with their features, and which lines hold a fact."""

    case: EvalCase
    question: str
    passages: list
    vector: np.ndarray  # the question's
    candidates: list[Candidate]
    matrix: np.ndarray
    labels: np.ndarray
    budget: int
    line_vectors: np.ndarray | None = None


def analysed_cases(dataset: Path, corpus: Path, settings: Settings, work_dir: Path,
                   with_vectors: bool = False) -> Iterator[AnalysedCase]:
    """Index `corpus` (incrementally, under work_dir) and analyse every answerable case that
    has candidate lines; `with_vectors` adds the lines' stored vectors (for trials)."""
    assistant = tuning_assistant(corpus, settings, work_dir)
    local, index = assistant.settings, assistant.index
    try:
        for case in load_dataset(dataset):
            if not case.answerable or not case.facts or is_instruction(case.user_input):
                continue
            condensed, focus = assistant.standalone(case.user_input, case.history)
            vector = assistant.searcher.embed_query(condensed)
            passages = assistant.searcher.search(condensed, local.k, vector=vector)
            candidates, matrix = assistant.extractive.candidates(condensed, passages, vector, focus)
            if not candidates:
                continue
            labels = np.array([any(fact_in(f, c.text) for f in case.facts) for c in candidates], dtype=bool)
            line_vectors = None
            if with_vectors:
                line_vectors = np.vstack([v for _, vs in assistant.extractive.passage_lines(passages) for v in vs])
            yield AnalysedCase(case, condensed, passages, vector, candidates, matrix, labels, local.answer_max_chars,
                               line_vectors)
    finally:
        index.close()


def collect(dataset: Path, corpus: Path, settings: Settings, work_dir: Path) -> list[Question]:
    """Every answerable case's candidate lines, features and labels (see `analysed_cases`)."""
    return [Question(Path(dataset).name, a.case.id, a.question, a.case.facts, a.candidates, a.matrix, a.labels,
                     a.budget, a.passages) for a in analysed_cases(dataset, corpus, settings, work_dir)]


# -- the conditional logit ----------------------------------------------------------
def _fit_weights(questions: list[Question], mean, scale, hidden: int, penalty: float, seed: int = 0) -> dict:
    return conditional_logit.fit([(q.matrix, q.labels) for q in questions], mean, scale, hidden, penalty, seed)


def _standardisation(questions: list[Question]):
    return conditional_logit.standardisation([q.matrix for q in questions])


def recall_at_1(questions: list[Question]) -> float:
    """Share of questions whose best-scored line holds a fact (questions with no such line count as misses)."""
    return sum(bool(q.labels[int(np.argmax(q.scores))]) for q in questions) / max(len(questions), 1)


def _out_of_fold(questions: list[Question], hidden: int, penalty: float) -> None:
    """Scores for each dataset's questions from a model fit on the other datasets."""
    for held in sorted({q.dataset for q in questions}):
        train = [q for q in questions if q.dataset != held]
        mean, scale = _standardisation(train)
        model = _fit_weights(train, mean, scale, hidden, penalty)
        for q in questions:
            if q.dataset == held:
                q.scores = reader.scores(q.matrix, model)


# -- the selection rule ---------------------------------------------------------------
def _answer_quality(questions: list[Question], rule: dict) -> tuple[float, float, float]:
    """Mean fact share and mean length of the composed answers, per dataset averaged, and the
    longest per-dataset median length."""
    per: dict[str, list[tuple[float, int]]] = {}
    for q in questions:
        candidates = [replace(c, score=float(s)) for c, s in zip(q.candidates, q.scores)]
        text, _ = compose_answer(choose_lines(q.question, candidates, rule, q.budget), q.passages)
        per.setdefault(q.dataset, []).append((fact_share(q.facts, [text]) or 0.0, len(text)))
    recalls = [np.mean([r for r, _ in v]) for v in per.values()]
    lengths = [np.mean([n for _, n in v]) for v in per.values()]
    medians = [np.median([n for _, n in v]) for v in per.values()]
    return float(np.mean(recalls)), float(np.mean(lengths)), float(max(medians))


def choose_rule(questions: list[Question]) -> tuple[dict, float, float]:
    """The selection rule with the best recall minus LENGTH_COST per character among those that
    keep every dataset's median answer within MAX_MEDIAN_CHARS (the shortest-median rule when
    none does), on out-of-fold scores: margins and line count first, then whether the best
    line's neighbours come along."""
    best = None

    def consider(rule: dict) -> None:
        nonlocal best
        recall, chars, longest_median = _answer_quality(questions, rule)
        within = longest_median <= MAX_MEDIAN_CHARS
        key = (within, recall - LENGTH_COST * chars if within else -longest_median)
        if best is None or key > best[0]:
            best = (key, rule, recall, chars)

    for max_lines in MAX_LINES:
        for margin in MARGINS:
            for other in OTHER_MARGINS:
                if other > margin:
                    continue
                for list_margin in LIST_MARGINS:
                    consider({"margin": margin, "other_margin": other, "list_margin": list_margin,
                              "max_lines": max_lines})
    base = best[1]
    for after, before, cap in NEIGHBOURS:
        consider({**base, "after": after, "before": before, "neighbour_chars": cap})
    return best[1], best[2], best[3]


def fit(questions: list[Question], sources: list[str]) -> dict:
    """Choose the model form by leave-one-dataset-out recall@1, fit it on everything, choose
    the selection rule on out-of-fold scores; return the model as JSON-ready data."""
    usable = [q for q in questions if q.labels.any()]
    trials = []
    for hidden in HIDDEN_SIZES:
        for penalty in PENALTIES:
            _out_of_fold(questions, hidden, penalty)
            trials.append((recall_at_1(questions), hidden, penalty))
            log.info("hidden %d, penalty %.2f: out-of-fold recall@1 %.3f", hidden, penalty, trials[-1][0])
    linear = max(t for t in trials if t[1] == 0)
    score, hidden, penalty = max(trials)
    if score < linear[0] + HIDDEN_MIN_GAIN:
        score, hidden, penalty = linear
    _out_of_fold(questions, hidden, penalty)
    rule, recall, chars = choose_rule(questions)
    mean, scale = _standardisation(questions)
    model = _fit_weights(questions, mean, scale, hidden, penalty)
    per_dataset = {}
    for name in sorted({q.dataset for q in questions}):
        subset = [q for q in questions if q.dataset == name]
        per_dataset[name] = round(recall_at_1(subset), 4)
    learned = [q.scores for q in questions]
    for q in questions:  # the baseline: the line closest to the question by cosine alone
        q.scores = q.matrix[:, reader.FEATURES.index("sim_from_top")]
    cosine = recall_at_1(questions)
    for q, s in zip(questions, learned):
        q.scores = s
    data = {
        "features": list(reader.FEATURES),
        "mean": [round(float(x), 6) for x in model["mean"]],
        "scale": [round(float(x), 6) for x in model["scale"]],
        "coef": [round(float(x), 6) for x in model["coef"]],
        "selection": rule,
        "fit": {
            "sources": sources,
            "questions": len(questions),
            "questions_with_answer_line": len(usable),
            "positive_pairs": int(sum(int(q.labels.sum()) for q in questions)),
            "candidate_lines": int(sum(len(q.labels) for q in questions)),
            "hidden": hidden,
            "penalty": penalty,
            "out_of_fold_recall_at_1": round(score, 4),
            "out_of_fold_recall_at_1_per_dataset": per_dataset,
            "cosine_recall_at_1": round(cosine, 4),
            "out_of_fold_fact_recall": round(recall, 4),
            "out_of_fold_answer_chars": round(chars, 1),
            "trials": [{"hidden": h, "penalty": p, "recall_at_1": round(r, 4)} for r, h, p in trials],
        },
    }
    if "hidden" in model:
        data["hidden"] = {k: np.round(v, 6).tolist() for k, v in model["hidden"].items()}
    return data


def fit_reader(pairs: list[tuple[Path, Path]], settings: Settings, work_dir: Path, out: Path = reader.MODEL_PATH) -> dict:
    """Collect labelled lines over (dataset, corpus) pairs, fit, write the model JSON; return it."""
    questions: list[Question] = []
    for dataset, corpus in pairs:
        found = collect(dataset, corpus, settings, work_dir)
        log.info("%s: %d answerable questions", dataset, len(found))
        questions.extend(found)
    data = fit(questions, [f"{d} on {c}" for d, c in pairs])
    Path(out).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    reader.forget_loaded_models()
    return data
