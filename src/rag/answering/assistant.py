"""The one API the app, the CLI and the evals call: `Assistant.ask(question, history) -> Answer`."""

from __future__ import annotations

import logging
from typing import Callable

from ..citations import check_answer, drop_invalid_markers, markers
from ..config import Settings
from ..errors import LLMError
from ..index import Index
from ..retrieval import HybridSearcher, check_k
from .answer import NOTE_LLM_DOWN, REFUSAL_TEXT, Answer, Citation
from .extractive import ExtractiveAnswerer
from .followups import condense_question
from .llm import LLMAnswerer, _best_line, _leaks_prompt
from .questions import validate_question
from .refusal import answerability

log = logging.getLogger(__name__)


class Assistant:
    """The one API the app, the CLI and the evals call: `ask(question, history) -> Answer`."""

    def __init__(self, settings: Settings, index: Index | None = None, chat_model=None):
        from ..llm import build_chat_model, describe_llm

        self.settings = settings
        self.index = index or Index(settings).open()
        self.searcher = HybridSearcher(self.index, settings)
        self.extractive = ExtractiveAnswerer(self.index.embeddings, settings, lambda w: self.index.lexical().idf(w))
        model = chat_model if chat_model is not None else build_chat_model(settings)
        self.llm = LLMAnswerer(model, settings, describe_llm(settings) if chat_model is None else "llm") if model else None

    @property
    def backend(self) -> str:
        return self.llm.name if self.llm else self.extractive.name

    def ask(
        self,
        question: str,
        history: list[dict] | None = None,
        k: int | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer a question (with optional chat history) from the indexed documents."""
        question = validate_question(question, self.settings.max_question_chars)
        k = check_k(self.settings.k if k is None else k)
        history = [m for m in (history or []) if m.get("role") in ("user", "assistant") and m.get("content")]
        notes: list[str] = []
        condensed = question
        if history:
            if self.llm:
                try:
                    condensed = self.llm.condense(question, history)
                except Exception:  # noqa: BLE001 - fall back to the rule
                    condensed = condense_question(question, history)
            else:
                condensed = condense_question(question, history)
        # One forward pass for the question, shared by retrieval and line scoring.
        vector = self.searcher.embed_query(condensed) if self.settings.retrieval_mode != "lexical" else None
        passages = self.searcher.search(condensed, k, vector=vector)
        verdict = answerability(condensed, passages, self.settings, self.index.lexical().knows)
        if verdict.injection:
            notes.append("De vraag bevat instructies aan de assistent; die worden genegeerd.")
        if not verdict.answerable:
            return Answer(question, REFUSAL_TEXT, True, [], passages, self.backend, notes,
                          condensed if condensed != question else None, verdict.score)
        if self.llm:
            try:
                # A copy: notes about a rejected model answer must not stick to the fallback.
                return self._llm_answer(question, condensed, passages, verdict.score, list(notes), on_token)
            except LLMError as exc:
                log.warning("LLM failed, falling back to extractive: %s", exc)
                notes.append(NOTE_LLM_DOWN)
        text, citations = self.extractive.answer(condensed, passages, vector)
        return Answer(question, text, False, citations, passages, self.extractive.name, notes,
                      condensed if condensed != question else None, verdict.score)

    def _llm_answer(self, question, condensed, passages, score, notes, on_token) -> Answer:
        raw = self.llm.answer(condensed, passages, on_token)
        text, dropped = drop_invalid_markers(raw, len(passages))
        if dropped:
            notes.append(f"Verwijzingen naar niet-bestaande passages verwijderd: {', '.join(f'[{n}]' for n in dropped)}.")
        if _leaks_prompt(text):
            raise LLMError("LLM answer repeats its instructions")
        if REFUSAL_TEXT.rstrip(".").lower() in text.lower() and not markers(text):
            return Answer(question, REFUSAL_TEXT, True, [], passages, self.llm.name, notes,
                          condensed if condensed != question else None, score)
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
        return Answer(question, text, False, citations, passages, self.llm.name, notes,
                      condensed if condensed != question else None, score)
