"""Refusal as selective answering: answer only when the evidence says the lines answer the question.

Features describe the question, the retrieved passages and the chosen answer lines; a
logistic model fit on labelled cases (`rag fit-refusal`, tuning splits only) turns them
into the probability that the question is answerable from the sources. The operating
point (threshold) is chosen on the same tuning cases; the risk-coverage curve is reported
on cases that were not used to fit it (`rag eval`). See Kamath, Jia & Liang, ACL 2020.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..lexical import content_words
from ..retrieval import Passage
from . import reader
from .extractive import Selection, asked_words, matches, weighted_coverage, word_weights
from .questions import is_dutch, named_terms

MODEL_PATH = Path(__file__).with_name("refusal_model.json")
BACKGROUND_QUESTIONS = Path(__file__).with_name("background_questions.txt")
FEATURES = (
    "dense_top",          # best passage's cosine similarity to the question
    "dense_peak",         # how far the best passage stands out from the others
    "line_similarity",    # best chosen line's cosine similarity to the question
    "passage_coverage",   # IDF-weighted share of the question's words in the best of the top-3 passages
    "unknown",            # IDF-weighted share of the question's words the corpus never uses
    "agreement",          # dense and BM25 rank the top passage high alike
    "lexical_strength",   # top BM25 score against the question's total IDF
    "missing_rare",       # IDF (relative to the rarest possible) of the rarest asked word the answer lacks
    "missing_number",     # the question names a number (a year, a version) the top passages do not have
    "line_margin",        # how far the best line stands out from the other lines (cosine)
    "topic_similarity",   # cosine of the question to the corpus centroid (off-topic questions are far)
    "topic_contrast",     # the same cosine with both seen from everyday questions (see `topic_similarity`)
    "missing_name",       # the question names something (a place, product, year) the top passages do not have
    "type_mismatch",      # a quantity, date, person or contact detail is asked and the chosen lines hold none
    "reader_top",         # the learned reader's score of the best line (how much it looks like an answer)
    "reader_margin",      # how far the best line's score stands above the passages' other lines
    "unknown_dutch",      # `unknown` for a Dutch question (an English one shares few words with Dutch text anyway)
    "nothing_known",      # a Dutch question with two or more asked words, none of which the corpus uses
    "count_missing",      # a "hoeveel scholen" question and no chosen line gives a number of scholen
    "year_missing",       # the question names a year the chosen lines do not (nor the line before, headings, title)
)


@dataclass
class Verdict:
    """The refusal decision with its evidence."""

    features: dict[str, float]
    probability: float
    threshold: float

    @property
    def answerable(self) -> bool:
        return self.probability >= self.threshold


def features(
    question: str,
    passages: list[Passage],
    selection: Selection,
    idf: Callable[[str], float] | None,
    knows: Callable[[str], bool],
    vector: np.ndarray | None = None,
    centroid: np.ndarray | None = None,
    background: np.ndarray | None = None,
) -> dict[str, float]:
    """The refusal model's inputs for one question (`vector`: its embedding; `centroid`: the
    corpus'; `background`: where everyday questions are, see `background_vector`)."""
    asked = asked_words(question)
    weights = word_weights(asked, idf)
    total = sum(weights.values())
    unknown = sum(w for word, w in weights.items() if not knows(word)) / total if total > 0 else 1.0
    dense = [p.dense_score for p in passages if p.dense_score is not None]
    dense_top = max(dense) if dense else 0.0
    dense_peak = dense_top - float(np.mean(dense)) if dense else 0.0
    passage_coverage = max(
        (weighted_coverage(weights, set(content_words(f"{p.section}\n{p.text}"))) for p in passages[:3]), default=0.0
    )
    top = passages[0] if passages else None
    if top is None:
        agreement = 0.0
    elif top.dense_rank and top.lexical_rank:
        agreement = 1.0 if max(top.dense_rank, top.lexical_rank) <= 3 else 0.5
    else:
        agreement = 0.0
    lexical = max((p.lexical_score or 0.0) for p in passages) if passages else 0.0
    found = set().union(*(c.words for c in selection.chosen)) if selection.chosen else set()
    if passages:
        found |= set(content_words(f"{passages[0].section}\n{passages[0].text}"))
    ceiling = max(idf("\x00"), 1e-6) if idf else 1.0  # the IDF of a word no chunk has
    missing_rare = max((weights[w] / ceiling for w in asked if not matches(w, found)), default=0.0)
    top_text = " ".join(p.text for p in passages[:3])
    missing_number = float(any(n not in top_text for n in re.findall(r"\d+", question)))
    top_folded = " ".join(f"{p.section} {p.text}" for p in passages[:3]).casefold()
    missing_name = float(any(
        not re.search(r"(?<!\w)" + re.escape(name.casefold()), top_folded) for name in named_terms(question)
    ))
    type_mismatch = float(asked_type_missing(question, " ".join(c.text for c in selection.chosen)))
    counted = reader.counted_noun(question)
    asked_years = reader.years(reader.own_question(question))
    sims = [c.similarity for c in selection.candidates]
    line_margin = selection.best_similarity - float(np.mean(sims)) if sims else 0.0
    line_scores = sorted((c.score for c in selection.candidates), reverse=True)
    reader_top = line_scores[0] if line_scores else -10.0
    reader_margin = line_scores[0] - line_scores[1] if len(line_scores) > 1 else 0.0
    return {
        "dense_top": float(dense_top),
        "dense_peak": float(dense_peak),
        "line_similarity": float(selection.best_similarity),
        "passage_coverage": float(passage_coverage),
        "unknown": float(unknown),
        "agreement": agreement,
        "lexical_strength": float(lexical / total) if total > 0 else 0.0,
        "missing_rare": float(min(missing_rare, 1.5)),
        "missing_number": missing_number,
        "line_margin": float(line_margin),
        "topic_similarity": topic_similarity(vector, centroid),
        "topic_contrast": topic_similarity(vector, centroid, background),
        "missing_name": missing_name,
        "type_mismatch": type_mismatch,
        "reader_top": float(reader_top),
        "reader_margin": float(reader_margin),
        "unknown_dutch": float(unknown) if is_dutch(question) else 0.0,
        "nothing_known": float(is_dutch(question) and len(asked) >= 2 and not any(knows(w) for w in asked)),
        "count_missing": float(counted is not None and not any(reader.gives_count_of(c.text, counted) for c in selection.chosen)),
        "year_missing": float(not asked_years <= reader.years(_with_context(selection, passages))),
    }


def _with_context(selection: Selection, passages: list[Passage]) -> str:
    """The chosen lines with what they are read under: the line before each ("toen" in a line
    points at the year the line before names), its headings and its document's title."""
    line_at = {(c.passage_index, c.position): c.text for c in selection.candidates}
    return " ".join(
        f"{passages[c.passage_index].title} {passages[c.passage_index].section} "
        f"{line_at.get((c.passage_index, c.position - 1), '')} {c.text}" for c in selection.chosen
    )


def topic_similarity(vector, centroid, background=None) -> float:
    """Cosine of the question to the corpus centroid, both taken relative to the background
    (all of a model's vectors share a direction that makes every plain cosine high)."""
    if vector is None or centroid is None:
        return 0.0
    q, c = np.asarray(vector, dtype=np.float32), np.asarray(centroid, dtype=np.float32)
    if background is not None:
        q, c = q - background, c - background
    return float(q @ c / max(float(np.linalg.norm(q) * np.linalg.norm(c)), 1e-9))


def asked_type_missing(question: str, text: str) -> bool:
    """The question asks for a quantity (also a grade or a size; an amount of money for a cost), a
    date, a person or a contact detail and the text holds none (numbers written in words count)."""
    asked = reader.asked_for(question)
    return (
        (asked.contact is not None and not reader.gives_contact(text, asked.contact))
        or (asked.quantity and not reader.has_amount(text, asked))
        or (asked.date and not reader.has_date(text))
        or (asked.person and not reader.names_someone(text))
    )


@lru_cache(maxsize=1)
def background_questions() -> tuple[list[str], str]:
    """The everyday questions of BACKGROUND_QUESTIONS and the sha256 of the file (read once:
    `background_vector` checks the digest on every question)."""
    raw = BACKGROUND_QUESTIONS.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")], hashlib.sha256(raw).hexdigest()


_embedded_backgrounds: dict[str, np.ndarray] = {}
_background_lock = threading.Lock()


def embed_background(embeddings) -> np.ndarray:
    """The mean vector of the background questions under `embeddings` (one batch)."""
    texts, _ = background_questions()
    return embeddings.encode(texts, embeddings.query_prefix).mean(axis=0).astype(np.float32)


def background_vector(embeddings, model_path: Path = MODEL_PATH) -> np.ndarray:
    """Where everyday questions are in `embeddings`' space: stored with the refusal model when it
    was fit with this embedding model on this background file, else embedded once per process."""
    # Read without the feature check: `rag fit-refusal` computes features (this vector among
    # them) before it writes a model for new features.
    try:
        model = _read_model(model_path)
    except FileNotFoundError:
        model = {}
    _, digest = background_questions()
    name = getattr(embeddings, "model_name", "")
    if (
        model.get("background")
        and model.get("background_sha256") == digest
        and model.get("fit", {}).get("embed_model") == name
    ):
        return np.asarray(model["background"], dtype=np.float32)
    with _background_lock:
        if name not in _embedded_backgrounds:
            _embedded_backgrounds[name] = embed_background(embeddings)
        return _embedded_backgrounds[name]


@lru_cache(maxsize=4)
def _read_model(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def forget_loaded_models() -> None:
    """Drop the cached model files (after `rag fit-refusal` wrote a new one)."""
    _read_model.cache_clear()


def load_model(path: Path = MODEL_PATH) -> dict:
    """The fitted model (features, standardisation, coefficients, threshold) from JSON."""
    data = _read_model(path)
    if tuple(data["features"]) != FEATURES:
        raise ValueError(f"{path} was fit on other features; run `rag fit-refusal`")
    return data


def probability(values: dict[str, float], model: dict) -> float:
    """P(answerable) from the logistic model."""
    x = np.array([values[name] for name in FEATURES], dtype=float)
    z = (x - np.array(model["mean"])) / np.array(model["scale"])
    logit = float(z @ np.array(model["coef"]) + model["intercept"])
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))


def decide(values: dict[str, float], threshold: float | None = None, model_path: Path = MODEL_PATH) -> Verdict:
    """Apply the fitted model; `threshold` overrides the fitted operating point."""
    model = load_model(model_path)
    chosen = model["threshold"] if threshold is None else threshold
    return Verdict(values, round(probability(values, model), 4), float(chosen))
