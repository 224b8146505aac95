"""Whether the retrieved passages can answer the question (refusal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import Settings
from ..lexical import content_words, similar_tokens
from ..retrieval import Passage
from .questions import _INJECTION, QUESTION_FRAME


def _matches(word: str, vocabulary: set[str]) -> bool:
    return word in vocabulary or any(similar_tokens(word, other) for other in vocabulary)


@dataclass
class Answerability:
    """The features behind the refusal decision.

    `score` is min(dense_top / min_dense, (1 - unknown) / (1 - max_unknown)), 0 for
    instruction attacks: below 1 means refuse. Tuned on evals/gold.jsonl (see README).
    """

    unknown: float
    coverage: float
    dense_top: float
    injection: bool
    score: float

    @property
    def answerable(self) -> bool:
        return self.score >= 1.0


def answerability(question: str, passages: list[Passage], settings: Settings, knows: Callable[[str], bool]) -> Answerability:
    """Decide whether the passages can answer the question.

    Refuse when most of the question's subject words occur nowhere in the corpus
    ("Groningen", "erwtensoep"), when even the best passage is far from the question,
    or when the question is an instruction to the assistant.
    """
    asked = [w for w in content_words(question) if w not in QUESTION_FRAME and not w.isdigit()]
    unknown = sum(1 for w in asked if not knows(w)) / len(asked) if asked else 1.0
    coverage = 0.0
    for p in passages[:3]:
        vocab = set(content_words(f"{p.section}\n{p.text}"))
        if asked:
            coverage = max(coverage, sum(1 for w in asked if _matches(w, vocab)) / len(asked))
    dense_top = max((p.dense_score or 0.0) for p in passages) if passages else 0.0
    injection = bool(_INJECTION.search(question))
    has_dense = any(p.dense_score is not None for p in passages)
    # Lexical-only retrieval has no similarity to judge by: decide on the words alone.
    dense_ratio = dense_top / settings.refusal_min_dense if settings.refusal_min_dense > 0 and has_dense else 1.0
    known_ratio = (1 - unknown) / (1 - settings.refusal_max_unknown) if settings.refusal_max_unknown < 1 else 1.0
    # Up to max_unknown unknown words passes; more refuses.
    known_ratio = max(known_ratio, 1.0) if unknown <= settings.refusal_max_unknown else min(known_ratio, 0.99)
    score = 0.0 if injection or not passages else min(dense_ratio, known_ratio)
    return Answerability(round(unknown, 3), round(coverage, 3), round(dense_top, 4), injection, round(score, 4))
