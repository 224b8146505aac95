"""The offline answerer: quote the passage lines that answer the question, verbatim, with [n]."""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import Settings
from ..lexical import content_words
from ..retrieval import Passage
from .answer import REFUSAL_TEXT, Citation
from .questions import _LIST_Q, _QUANTITY, QUESTION_FRAME
from .refusal import _matches

LINE_CACHE_SIZE = 50_000
KIND_LABEL = {
    "factsheet": "de factsheet",
    "rapport": "het rapport",
    "handreiking": "de handreiking",
    "webpagina": "de projectpagina",
}

@dataclass
class _Unit:
    text: str
    passage_index: int
    position: int
    is_list_item: bool


def _units(passages: list[Passage]) -> list[_Unit]:
    """Answer candidates: the lines of each passage (sentences and list items).

    A chart line ("Samenwerkingsverbanden: 33% 40% 27%") takes the short label lines
    that follow it, so numbers are never quoted without what they measure.
    """
    units: list[_Unit] = []
    for pi, p in enumerate(passages):
        lines = [ln.strip() for ln in p.text.splitlines() if ln.strip()]
        for pos, line in enumerate(lines):
            is_item = bool(_ITEM.match(line))
            is_label = len(line) < 40 and not is_item and not any(ch.isdigit() for ch in line)
            prev = units[-1] if units and units[-1].passage_index == pi else None
            if is_label and prev is not None and _NUMERIC_LINE.search(prev.text):
                prev.text = f"{prev.text}; {line}"
                continue
            units.append(_Unit(_ITEM.sub("", line), pi, pos, is_item))
    return units


_ITEM = re.compile(r"^[-*+•]\s+")
_NUMERIC_LINE = re.compile(r"\d+\s?%(?:[^A-Za-z]*\d+\s?%)+\s*(;|$)")


def _contexts(units: list[_Unit], passages: list[Passage]) -> list[str]:
    """What each line is scored on: its headings, its text, and for an unlabeled chart
    line the labels of the chart before it in the same passage (same number of values)."""
    contexts = []
    previous_labels: dict[int, tuple[int, str]] = {}
    for u in units:
        values = _PERCENT.findall(u.text)
        labels = ""
        if values and ";" in u.text:
            previous_labels[u.passage_index] = (len(values), u.text.split(";", 1)[1])
        elif values and u.passage_index in previous_labels:
            count, text = previous_labels[u.passage_index]
            labels = f" ({text})" if count == len(values) else ""
        contexts.append(f"{_subsection(passages[u.passage_index])}{u.text}{labels}")
    return contexts


_PERCENT = re.compile(r"\d+\s?%")


def _subsection(p: Passage) -> str:
    """The passage's headings below the document root, as context for scoring a line."""
    parts = p.section.split(" › ")[1:]
    return " › ".join(parts) + ": " if parts else ""


def _lead(p: Passage) -> str:
    label = KIND_LABEL.get(p.kind, f"‘{p.title}’")
    last = p.section.split(" › ")[-1] if " › " in p.section else ""
    return f"Volgens {label}" + (f" ({last})" if last else "")


class ExtractiveAnswerer:
    """Quote the sentences of the top passages that answer the question, verbatim, with [n]."""

    name = "extractief"

    def __init__(self, embeddings, settings: Settings, idf: Callable[[str], float] | None = None):
        self.embeddings = embeddings
        self.settings = settings
        self.idf = idf
        # Line vectors depend only on the line and its headings, so they are computed once
        # per process; a question then pays one forward pass for itself (plus new lines).
        self._line_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _vectors(
        self, question: str, contexts: list[str], question_vector: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Question vector and one vector per context line (cached, LRU)."""
        found: dict[str, np.ndarray] = {}
        with self._cache_lock:
            for c in contexts:
                if c in self._line_vectors:
                    self._line_vectors.move_to_end(c)
                    found[c] = self._line_vectors[c]
        missing = list(dict.fromkeys(c for c in contexts if c not in found))
        asked = [] if question_vector is not None else [question]
        encoded = (
            self.embeddings.encode(asked + missing, self.embeddings.query_prefix) if asked or missing else []
        )
        if question_vector is None:
            question_vector = encoded[0]
        found.update(zip(missing, encoded[len(asked):]))
        with self._cache_lock:
            for text in missing:
                self._line_vectors[text] = found[text]
            while len(self._line_vectors) > LINE_CACHE_SIZE:
                self._line_vectors.popitem(last=False)
        lines = [found[c] for c in contexts]
        return question_vector, np.vstack(lines)

    def answer(
        self, question: str, passages: list[Passage], question_vector: np.ndarray | None = None
    ) -> tuple[str, list[Citation]]:
        """Pick and order the passage lines that answer the question; return text and citations.

        `question_vector` is the question's query embedding when retrieval already computed it."""
        units = _units(passages)
        if not units:
            return REFUSAL_TEXT, []
        contexts = _contexts(units, passages)
        scores = self._score(question, units, contexts, question_vector)
        order = np.argsort(-np.asarray(scores), kind="stable")
        best = scores[order[0]]
        chosen: list[int] = []
        seen: set[str] = set()
        used = 0
        budget = self.settings.answer_max_chars

        def take(i: int) -> bool:
            nonlocal used
            key = " ".join(units[i].text.lower().split())
            if key in seen or (chosen and used + len(units[i].text) > budget):
                return False
            if len(units[i].text) > budget:  # one over-long line: quote its verbatim start
                cut = units[i].text.rfind(" ", 0, budget)
                units[i].text = units[i].text[: cut if cut > 0 else budget] + " …"
            chosen.append(i)
            seen.add(key)
            used += len(units[i].text) + 6
            return True

        for i in order:
            if chosen and (scores[i] < best - 0.12 or len(chosen) >= 3):
                break
            take(int(i))
        if _LIST_Q.search(question):
            self._add_list(question, units, passages, take)
        chosen.sort(key=lambda i: (units[i].passage_index, units[i].position))
        return self._compose([units[i] for i in chosen], passages)

    def _score(
        self, question: str, units: list[_Unit], contexts: list[str], question_vector: np.ndarray | None = None
    ) -> list[float]:
        question_vector, line_vectors = self._vectors(question, contexts, question_vector)
        sims = line_vectors @ question_vector
        asked = [w for w in content_words(question) if w not in QUESTION_FRAME]
        vocabularies = [set(content_words(c)) for c in contexts]
        # Rarer words say more about which line answers: "kansen" or "ketens" rather than
        # "onderwijs" or "samenwerkingsverbanden", which the whole corpus is about.
        weights = {}
        for w in asked:
            if self.idf is not None:
                weights[w] = self.idf(w)
            else:
                df = sum(1 for v in vocabularies if _matches(w, v))
                weights[w] = math.log((len(units) + 1) / (df + 0.5))
        total = sum(weights.values())
        wants_number = bool(_QUANTITY.search(question))
        scores = []
        for u, vocab, sim in zip(units, vocabularies, sims):
            overlap = sum(weights[w] for w in asked if _matches(w, vocab)) / total if total > 0 else 0.0
            has_number = bool(re.search(r"\d", u.text))
            score = 0.45 * float(sim) + 0.45 * overlap + (0.15 if wants_number and has_number else 0.0)
            score -= 0.03 * u.passage_index  # the fused ranking already weighed the passages
            if len(u.text) < 15 and not has_number:
                score -= 0.2  # fragments like "veelgenoemd ..." answer nothing
            scores.append(score)
        return scores

    @staticmethod
    def _add_list(question: str, units: list[_Unit], passages: list[Passage], take: Callable[[int], bool]) -> None:
        """For "welke/wat zijn" questions, add the items of the list whose passage matches best."""
        asked = [w for w in content_words(question) if w not in QUESTION_FRAME]
        by_passage: dict[int, list[int]] = {}
        for i, u in enumerate(units):
            if u.is_list_item:
                by_passage.setdefault(u.passage_index, []).append(i)
        best, best_pi = 0.0, None
        for pi, members in by_passage.items():
            if len(members) < 2 or not asked:
                continue
            p = passages[pi]
            vocab = set(content_words(f"{p.section}\n{p.text}"))
            overlap = sum(1 for w in asked if _matches(w, vocab)) / len(asked) - 0.03 * pi
            if overlap > best:
                best, best_pi = overlap, pi
        if best_pi is None or best < 0.34:
            return
        for i in by_passage[best_pi]:
            take(i)

    def _compose(self, chosen: list[_Unit], passages: list[Passage]) -> tuple[str, list[Citation]]:
        numbers: dict[int, int] = {}
        citations: list[Citation] = []
        lines: list[str] = []
        current_doc = None
        for u in chosen:
            p = passages[u.passage_index]
            if u.passage_index not in numbers:
                numbers[u.passage_index] = len(numbers) + 1
                citations.append(Citation(numbers[u.passage_index], p, u.text))
            n = numbers[u.passage_index]
            if p.doc_id != current_doc:
                lines.append(f"{_lead(p)}:")
                current_doc = p.doc_id
            lines.append(f"- {u.text} [{n}]" if u.is_list_item else f"{u.text} [{n}]")
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
