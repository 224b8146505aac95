"""The offline answerer: quote the passage lines that answer the question, verbatim, with [n].

Lines and their vectors come from the index (cut and embedded at ingest, see rag.lines), so
choosing lines costs no forward pass beyond the question's own vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import Settings
from ..lexical import content_words, similar_tokens
from ..lines import Line, embed_text, split_lines, subsection
from ..retrieval import Passage
from ..tables import parse_row
from . import reader
from .answer import REFUSAL_TEXT, Citation
from .questions import LIST_QUESTION, QUESTION_FRAME

KIND_LABEL = {"factsheet": "de factsheet", "rapport": "het rapport", "handreiking": "de handreiking"}
# Weight of the question's own words in a follow-up, against words carried over from before.
FOCUS_WEIGHT = 2.0


@dataclass
class Candidate:
    """A line of a retrieved passage that could be quoted."""

    text: str
    passage_index: int
    position: int
    is_item: bool
    words: set[str]
    line_words: set[str] = field(default_factory=set)
    score: float = 0.0
    similarity: float = 0.0
    overlap: float = 0.0


@dataclass
class Selection:
    """The chosen lines and what the refusal model needs to judge them."""

    chosen: list[Candidate]
    candidates: list[Candidate] = field(default_factory=list)
    best_similarity: float = 0.0
    features: np.ndarray | None = None  # the reader's feature matrix, one row per candidate


def matches(word: str, vocabulary: set[str]) -> bool:
    """The word, or an inflection of it, is in the vocabulary."""
    return word in vocabulary or any(similar_tokens(word, other) for other in vocabulary)


def asked_words(question: str) -> list[str]:
    """The question's subject words: content tokens that are not question framing."""
    return [w for w in content_words(question) if w not in QUESTION_FRAME]


def word_weights(words: list[str], idf: Callable[[str], float] | None, focus: set[str] = frozenset()) -> dict[str, float]:
    """IDF weight per asked word (rarer words say more about which line answers)."""
    weights = {w: max(idf(w), 0.1) if idf else 1.0 for w in words}
    for w in weights:
        if w in focus:
            weights[w] *= FOCUS_WEIGHT
    return weights


def weighted_coverage(weights: dict[str, float], vocabulary: set[str]) -> float:
    """Share of the asked words' weight found in a vocabulary."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return sum(w for word, w in weights.items() if matches(word, vocabulary)) / total


def _lead(p: Passage) -> str:
    label = KIND_LABEL.get(p.kind, f"‘{p.title}’")
    last = p.section.split(" › ")[-1] if " › " in p.section else ""
    return f"Volgens {label}" + (f" ({last})" if last else "")


def _is_question(c: Candidate) -> bool:
    return c.text.rstrip().endswith("?")


def _is_prose(c: Candidate) -> bool:
    """A sentence of running text: not a question, a list item or a table row."""
    return not (_is_question(c) or c.is_item or parse_row(c.text))


def choose_lines(question: str, candidates: list[Candidate], rule: dict, budget: int) -> list[Candidate]:
    """The best line; other lines whose score is within the fitted margin of it (a stricter one
    for lines of another passage: they must add an answering line of their own); whole lists;
    the best line's neighbours when the rule has them."""
    # A line that is itself a question ("Klopt het dat ...?") answers nothing, however close it is.
    order = sorted(range(len(candidates)), key=lambda i: (_is_question(candidates[i]), -candidates[i].score))
    best = candidates[order[0]]
    chosen = [best]
    for i in order[1:]:
        c = candidates[i]
        margin = rule["margin"] if c.passage_index == best.passage_index else rule["other_margin"]
        if len(chosen) >= rule["max_lines"]:
            break
        if c.score >= best.score - margin and c.text.casefold() != best.text.casefold() and not _is_question(c):
            chosen.append(c)
    asks_list = bool(LIST_QUESTION.search(question))
    # The list a chosen line belongs to or introduces; for a list question with none, the
    # list (with the line that introduces it) that scores best.
    run = next((r for r in (_list_run(candidates, c) for c in chosen) if r), [])
    if not run and asks_list:
        runs = [r for r in (_list_run(candidates, c) for c in candidates) if r]
        run = max(runs, key=lambda r: _run_score(candidates, r), default=[])
        if run and _run_score(candidates, run) < best.score - rule["list_margin"]:
            run = []
    # A line right above a list introduces it even without a colon (PDF text often loses it).
    if run and (asks_list or _introduces(candidates, best, run)
                or any(c.is_item or c.text.rstrip().endswith(":") for c in chosen)):
        chosen = [c for c in chosen if not c.is_item or c in run] + [c for c in run if c not in chosen]
    return _within_budget(_with_neighbours(candidates, best, chosen, rule), budget)


def _with_neighbours(candidates: list[Candidate], best: Candidate, chosen: list[Candidate], rule: dict) -> list[Candidate]:
    """The chosen lines plus the best line's neighbours in its passage (the fitted number
    after and before it), while the answer stays within the fitted length: prose often goes
    on in the next sentence ("Sommige daarvan ..."). List items and table rows are records
    of their own, not a continuation: the list rule above quotes lists, and a row next to
    the asked row answers another question. A line that introduces a list ends them."""
    after, before = rule.get("after", 0), rule.get("before", 0)
    if (not after and not before) or not _is_prose(best):
        return chosen
    same, at = _in_passage(candidates, best)
    out = list(chosen)
    used = sum(len(c.text) for c in out)
    for c in same[at + 1 : at + 1 + after] + same[max(0, at - before) : at][::-1]:
        if c in out or not _is_prose(c) or used + len(c.text) > rule["neighbour_chars"]:
            continue
        if _list_run(candidates, c):
            break  # it introduces a list ("veelgenoemd ..."): without the items it dangles
        out.append(c)
        used += len(c.text)
    return out


def _in_passage(candidates: list[Candidate], line: Candidate) -> tuple[list[Candidate], int]:
    """The lines of `line`'s passage, in order, and where `line` is among them."""
    same = [c for c in candidates if c.passage_index == line.passage_index]
    return same, same.index(line)


def _run_score(candidates: list[Candidate], run: list[Candidate]) -> float:
    """A list scores as its best item or the line that introduces it."""
    same, at = _in_passage(candidates, run[0])
    intro = [c.score for c in same[max(0, at - 2) : at] if not c.is_item]
    return max([c.score for c in run] + intro)

def _list_run(candidates: list[Candidate], anchor: Candidate) -> list[Candidate]:
    """The whole list the anchor belongs to, or introduces (items right after it, past at
    most one short line such as "veelgenoemd ...")."""
    same, at = _in_passage(candidates, anchor)
    start = at
    if not anchor.is_item:
        start = at + 1
        if start < len(same) and not same[start].is_item and len(same[start].text) <= 30:
            start += 1
    if start >= len(same) or not same[start].is_item:
        return []
    while start > 0 and same[start - 1].is_item:
        start -= 1
    end = start
    while end < len(same) and same[end].is_item:
        end += 1
    return same[start:end] if end - start >= 2 else []

def _introduces(candidates: list[Candidate], line: Candidate, run: list[Candidate]) -> bool:
    """`line` is prose and the list `run` starts on the line after it in the same passage."""
    if line.is_item:
        return False
    same, at = _in_passage(candidates, line)
    return at + 1 < len(same) and same[at + 1] is run[0]


def _within_budget(chosen: list[Candidate], budget: int) -> list[Candidate]:
    # A whole list may exceed the budget a little: a list cut in half misleads.
    limit = budget * 1.5 if sum(c.is_item for c in chosen) >= 2 else budget
    kept: list[Candidate] = []
    used = 0
    for c in chosen:
        if kept and used + len(c.text) > limit:
            continue
        if len(c.text) > budget:  # one over-long line: quote its verbatim start
            cut = c.text.rfind(" ", 0, budget)
            c.text = c.text[: cut if cut > 0 else budget] + " …"
        kept.append(c)
        used += len(c.text) + 6
    return kept


def compose_answer(chosen: list[Candidate], passages: list[Passage]) -> tuple[str, list[Citation]]:
    """The answer text: lines in document order, each with [n]; when they come from more than
    one document, each document's lines under a lead naming it (one document is named by the
    sources under the answer, and a lead would only lengthen it)."""
    if not chosen:
        return REFUSAL_TEXT, []
    chosen = sorted(chosen, key=lambda c: (c.passage_index, c.position))
    several = len({passages[c.passage_index].doc_id for c in chosen}) > 1
    numbers: dict[int, int] = {}
    citations: list[Citation] = []
    lines: list[str] = []
    current_doc = None
    for c in chosen:
        p = passages[c.passage_index]
        if c.passage_index not in numbers:
            numbers[c.passage_index] = len(numbers) + 1
            citations.append(Citation(numbers[c.passage_index], p, c.text))
        n = numbers[c.passage_index]
        citations[n - 1].quotes.append(c.text)
        if several and p.doc_id != current_doc:
            lines.append(f"{_lead(p)}:")
            current_doc = p.doc_id
        lines.append(f"- {c.text} [{n}]" if c.is_item else f"{c.text} [{n}]")
    text = ""
    after_list = False
    for line in lines:
        if line.startswith("- "):
            text += "\n" + line
            after_list = True
        else:
            # Prose after a list starts a new paragraph instead of running on its last item.
            text += ("\n\n" if after_list else " " if text else "") + line
            after_list = False
    return text.strip(), citations


class ExtractiveAnswerer:
    """Quote the lines of the top passages that answer the question, verbatim, with [n]."""

    name = "extractief"

    def __init__(
        self,
        embeddings,
        settings: Settings,
        idf: Callable[[str], float] | None = None,
        lines_for: Callable[[list[str]], dict] | None = None,
        reader_path: Path = reader.MODEL_PATH,
    ):
        self.embeddings = embeddings
        self.settings = settings
        self.idf = idf
        self.lines_for = lines_for
        self.reader_path = reader_path

    def passage_lines(self, passages: list[Passage]) -> list[tuple[list[Line], np.ndarray]]:
        """Each passage's lines and vectors: stored at ingest, or cut and embedded now for
        passages the index holds no lines for (an index built before lines existed)."""
        stored = self.lines_for([p.chunk_id for p in passages]) if self.lines_for else {}
        out = []
        missing = [i for i, p in enumerate(passages) if p.chunk_id not in stored]
        computed: dict[int, tuple[list[Line], np.ndarray]] = {}
        if missing:
            cut = {i: split_lines(passages[i].text) for i in missing}
            texts = [embed_text(passages[i].section, ln) for i in missing for ln in cut[i]]
            vectors = self.embeddings.encode(texts, self.embeddings.passage_prefix) if texts else np.zeros((0, 1))
            at = 0
            for i in missing:
                computed[i] = (cut[i], vectors[at : at + len(cut[i])])
                at += len(cut[i])
        for i, p in enumerate(passages):
            out.append(stored[p.chunk_id] if p.chunk_id in stored else computed[i])
        return out

    def candidates(
        self, question: str, passages: list[Passage], question_vector: np.ndarray, focus: set[str] = frozenset()
    ) -> tuple[list[Candidate], np.ndarray]:
        """Every line of the passages, with its cosine to the question and the reader's features."""
        candidates: list[Candidate] = []
        vectors = []
        for pi, (lines, line_vectors) in enumerate(self.passage_lines(passages)):
            sub = subsection(passages[pi].section)
            for line, vector in zip(lines, line_vectors):
                line_words = set(content_words(line.text))
                candidates.append(Candidate(line.text, pi, line.position, line.is_item,
                                            line_words | set(content_words(sub)), line_words))
                vectors.append(vector)
        if not candidates:
            return [], np.zeros((0, len(reader.FEATURES)), dtype=np.float32)
        sims = np.vstack(vectors) @ np.asarray(question_vector, dtype=np.float32)
        asked = asked_words(question)
        weights = word_weights(asked, self.idf)
        focus_weights = {w: v for w, v in weights.items() if w in focus}
        for c, sim in zip(candidates, sims):
            c.similarity = float(sim)
            c.overlap = weighted_coverage(weights, c.words)
        matrix = reader.line_features(question, candidates, sims, weights, focus_weights, weighted_coverage,
                                      [p.section for p in passages])
        return candidates, matrix

    def select(
        self, question: str, passages: list[Passage], question_vector: np.ndarray, focus: set[str] = frozenset()
    ) -> Selection:
        """Score every line of the passages with the learned reader and choose the answer lines."""
        candidates, matrix = self.candidates(question, passages, question_vector, focus)
        if not candidates:
            return Selection([])
        model = reader.load_model(self.reader_path)
        for c, score in zip(candidates, reader.scores(matrix, model)):
            c.score = float(score)
        chosen = choose_lines(question, candidates, model["selection"], self.settings.answer_max_chars)
        return Selection(chosen, candidates, max(c.similarity for c in chosen) if chosen else 0.0, matrix)

    def answer(
        self, question: str, passages: list[Passage], question_vector: np.ndarray | None = None
    ) -> tuple[str, list[Citation]]:
        """Choose and compose the answer lines (the question is embedded when no vector is given)."""
        if not passages:
            return REFUSAL_TEXT, []
        if question_vector is None:
            question_vector = self.embeddings.encode([question], self.embeddings.query_prefix)[0]
        return compose_answer(self.select(question, passages, question_vector).chosen, passages)

