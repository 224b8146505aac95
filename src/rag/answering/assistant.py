"""The one API the app, the CLI and the evals call: `Assistant.ask(question, history) -> Answer`."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..citations import check_answer, drop_invalid_markers, markers
from ..config import Settings
from ..errors import LLMError
from ..lines import subsection
from ..retrieval import HybridSearcher, Passage, check_k
from ..store import Index
from .answer import (
    NOTE_LLM_DOWN,
    REFUSAL_INSTRUCTION,
    REFUSAL_MISSING_DOCUMENT,
    REFUSAL_NOT_IN_SOURCES,
    REFUSAL_TEXT,
    REFUSAL_TEXTS,
    Answer,
    Citation,
)
from .extractive import Candidate, ExtractiveAnswerer, Selection, asked_words, compose_answer
from .followups import condense_question, is_follow_up
from .llm import LLMAnswerer, _best_line, _leaks_prompt
from .questions import is_instruction, is_overview, kinds_named, validate_question
from .refusal import Verdict, background_vector, decide, features

log = logging.getLogger(__name__)

# The documents this assistant is for; a question that needs one that is not indexed is told so.
EXPECTED_KINDS = ("rapport", "handreiking")
KIND_NAMES = {"rapport": "het rapport", "handreiking": "de handreiking"}
# Headings under which documents summarise themselves.
SUMMARY_HEADING = re.compile(
    r"samenvatting|conclusie|kernbevinding|belangrijkste|inleiding|introductie|over dit|summary|introduction", re.I
)
# A refused question this close to the corpus's subject (its topic_contrast feature, a cosine seen
# from everyday questions) is near the topic: the answer may be in a document not loaded yet.
# On the tuning splits off-topic questions score -0.08..0.12, answerable ones 0.06..0.50.
NEAR_TOPIC = 0.15
OVERVIEW_CHUNKS_PER_DOC = 3
OVERVIEW_LINES = 4
NOTE_INSTRUCTION = "De vraag bevat instructies aan de assistent; die worden genegeerd."


@dataclass
class Analysis:
    """Everything `ask` works out before deciding to answer: kept so the evals can fit the refusal model."""

    question: str
    condensed: str
    passages: list[Passage]
    selection: Selection
    features: dict[str, float]
    vector: np.ndarray | None
    missing_kinds: list[str] = field(default_factory=list)


def _missing_note(kinds: list[str]) -> str:
    names = " en ".join(KIND_NAMES.get(k, k) for k in kinds)
    verb = "zijn" if len(kinds) > 1 else "is"
    return (
        f"Let op: {names} {verb} nog niet toegevoegd, dus het antwoord komt uit de andere bronnen. "
        "Voeg het document toe op de pagina Bronnen."
    )


def _missing_refusal(kinds: list[str]) -> str:
    names = " of ".join(KIND_NAMES.get(k, k) for k in kinds)
    if len(kinds) > 1:
        which, verb, obj = "die", "zijn", "ze"
    elif KIND_NAMES.get(kinds[0], "").startswith("de "):
        which, verb, obj = "die", "is", "deze"  # de handreiking, die ...: voeg deze toe
    else:
        which, verb, obj = "dat", "is", "het"  # het rapport, dat ...: voeg het toe
    return (
        f"Dat staat niet in de geladen bronnen. Het staat mogelijk in {names}, {which} nog niet {verb} toegevoegd: "
        f"voeg {obj} toe op de pagina Bronnen."
    )


class Assistant:
    """Answers questions from one index: retrieval, answer lines, refusal, optional LLM."""

    def __init__(self, settings: Settings, index: Index | None = None, chat_model=None):
        from ..llm import build_chat_model, describe_llm

        self.settings = settings
        self.index = index or Index(settings).open()
        self.searcher = HybridSearcher(self.index, settings)
        self.extractive = ExtractiveAnswerer(
            self.index.embeddings, settings, self._idf, lines_for=self.index.lines_for
        )
        model = chat_model if chat_model is not None else build_chat_model(settings)
        self.llm = LLMAnswerer(model, settings, describe_llm(settings) if chat_model is None else "llm") if model else None
        self._kinds_lock = threading.Lock()
        self._kinds: tuple[int, set[str]] | None = None

    @property
    def backend(self) -> str:
        return self.llm.name if self.llm else self.extractive.name

    def _idf(self, word: str) -> float:
        return self.index.lexical().idf(word)

    def indexed_kinds(self) -> set[str]:
        """Kinds of the indexed documents (cached per index generation)."""
        generation = self.index.lexical().generation
        with self._kinds_lock:
            if self._kinds is None or self._kinds[0] != generation:
                self._kinds = (generation, {d["kind"] for d in self.index.documents()})
            return self._kinds[1]

    def _condense(self, question: str, history: list[dict]) -> str:
        if not history:
            return question
        rule = condense_question(question, history)
        if not is_follow_up(question, history):
            return rule  # it stands alone (own subject, or another language): nothing to rewrite
        if self.llm:
            try:
                return self.llm.condense(question, history)
            except Exception:  # noqa: BLE001 - any LLM failure falls back to the rule
                log.info("follow-up rewrite by the LLM failed; using the rule")
        return rule

    def standalone(self, question: str, history: list[dict] | None = None) -> tuple[str, set[str]]:
        """The question made to stand alone (a follow-up condensed with the history) and its focus
        words: a follow-up's own words, which weigh more than those carried over."""
        history = [m for m in (history or []) if m.get("role") in ("user", "assistant") and m.get("content")]
        condensed = self._condense(question, history)
        return condensed, set(asked_words(question)) if condensed != question else set()

    def analyse(self, question: str, history: list[dict] | None = None, k: int | None = None) -> Analysis:
        """Retrieve passages, choose answer lines and compute the refusal features (no decision)."""
        k = check_k(self.settings.k if k is None else k)
        condensed, focus = self.standalone(question, history)
        # One forward pass for the question, shared by retrieval and line scoring.
        vector = self.searcher.embed_query(condensed) if self.settings.retrieval_mode != "lexical" else None
        passages = self.searcher.search(condensed, k, vector=vector)
        if vector is None:  # lexical mode still scores lines by meaning
            vector = self.searcher.embed_query(condensed)
        selection = self.extractive.select(condensed, passages, vector, focus) if passages else Selection([])
        values = features(condensed, passages, selection, self._idf, self.index.lexical().knows, vector,
                          self.index.centroid(), background_vector(self.index.embeddings))
        missing = [k_ for k_ in kinds_named(question) if k_ not in self.indexed_kinds()]
        return Analysis(question, condensed, passages, selection, values, vector, missing)

    def ask(
        self,
        question: str,
        history: list[dict] | None = None,
        k: int | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer a question (with optional chat history) from the indexed documents."""
        question = validate_question(question, self.settings.max_question_chars)
        if is_instruction(question):
            return Answer(question, REFUSAL_TEXTS[REFUSAL_INSTRUCTION], True, [], [], self.backend,
                          [NOTE_INSTRUCTION], refusal_reason=REFUSAL_INSTRUCTION)
        a = self.analyse(question, history, k)
        condensed = a.condensed if a.condensed != question else None
        notes = [_missing_note(a.missing_kinds)] if a.missing_kinds else []
        if is_overview(a.condensed):
            passages, chosen = self._overview(a.vector)
            if chosen:
                return self._respond(a, passages, chosen, notes, condensed, 1.0, on_token)
        verdict = decide(a.features, self.settings.refusal_threshold)
        if not verdict.answerable or not a.selection.chosen:
            return self._refusal(a, verdict, condensed)
        return self._respond(a, a.passages, a.selection.chosen, notes, condensed, verdict.probability, on_token)

    def _refusal(self, a: Analysis, verdict: Verdict, condensed: str | None) -> Answer:
        missing = a.missing_kinds
        if not missing and a.features["topic_contrast"] >= NEAR_TOPIC:
            # Near the topic but not in what is loaded: a document this assistant is for may hold it.
            missing = [k for k in EXPECTED_KINDS if k not in self.indexed_kinds()]
        if missing:
            return Answer(a.question, _missing_refusal(missing), True, [], a.passages, self.backend, [], condensed,
                          verdict.probability, REFUSAL_MISSING_DOCUMENT, missing)
        return Answer(a.question, REFUSAL_TEXT, True, [], a.passages, self.backend, [], condensed,
                      verdict.probability, REFUSAL_NOT_IN_SOURCES)

    def _respond(self, a, passages, chosen, notes, condensed, score, on_token) -> Answer:
        if self.llm:
            try:
                # A copy: notes about a rejected model answer must not stick to the fallback.
                return self._llm_answer(a.question, a.condensed, passages, score, list(notes), on_token, a.missing_kinds)
            except LLMError as exc:
                log.warning("LLM failed, falling back to extractive: %s", exc)
                notes.append(NOTE_LLM_DOWN)
        text, citations = compose_answer(chosen, passages)
        return Answer(a.question, text, False, citations, passages, self.extractive.name, notes, condensed, score,
                      missing_kinds=a.missing_kinds)

    def _overview(self, vector: np.ndarray) -> tuple[list[Passage], list[Candidate]]:
        """Lines from the documents' own summary material: sections that summarise or introduce,
        else each document's opening chunks; the lines closest to the question, one document at a time."""
        passages: list[Passage] = []
        for doc in sorted(self.index.documents(), key=lambda d: (EXPECTED_KINDS + ("factsheet",)).index(d["kind"])
                          if d["kind"] in EXPECTED_KINDS + ("factsheet",) else 9):
            records = self.index.chunks_of(doc["doc_id"])
            summary = [r for r in records if SUMMARY_HEADING.search(subsection(r.section))]
            for r in (summary or records)[:OVERVIEW_CHUNKS_PER_DOC]:
                passages.append(Passage.from_record(r, 0.0))
        if not passages:
            return [], []
        selection = self.extractive.select("", passages, vector)
        best_per_doc: dict[str, Candidate] = {}
        for c in sorted(selection.candidates, key=lambda c: -c.similarity):
            doc = passages[c.passage_index].doc_id
            if doc not in best_per_doc and len(c.text) >= 40 and not c.is_item:
                best_per_doc[doc] = c
        chosen = sorted(best_per_doc.values(), key=lambda c: -c.similarity)[:OVERVIEW_LINES]
        return passages, chosen

    def _llm_answer(self, question, condensed, passages, score, notes, on_token, missing_kinds) -> Answer:
        shown_condensed = condensed if condensed != question else None
        raw = self.llm.answer(condensed, passages, on_token)
        text, dropped = drop_invalid_markers(raw, len(passages))
        if dropped:
            notes.append(f"Verwijzingen naar niet-bestaande passages verwijderd: {', '.join(f'[{n}]' for n in dropped)}.")
        if _leaks_prompt(text):
            raise LLMError("LLM answer repeats its instructions")
        if REFUSAL_TEXT.rstrip(".").lower() in text.lower() and not markers(text):
            return Answer(question, REFUSAL_TEXT, True, [], passages, self.llm.name, notes, shown_condensed, score,
                          REFUSAL_NOT_IN_SOURCES, missing_kinds)
        if not markers(text):
            raise LLMError("LLM answer cites no passage")
        checks = check_answer(text, [p.text for p in passages])
        for check in checks:
            missing = check.missing_numbers + check.missing_names
            if missing:
                notes.append(
                    f"Let op: {', '.join(missing)} staat niet in de geciteerde passage(s): “{check.sentence[:80]}”"
                )
        citations = []
        for n in dict.fromkeys(markers(text)):
            p = passages[n - 1]
            claims = " ".join(c.sentence for c in checks if n in c.cited)
            citations.append(Citation(n, p, _best_line(p.text, claims)))
        return Answer(question, text, False, citations, passages, self.llm.name, notes, shown_condensed, score,
                      missing_kinds=missing_kinds)
