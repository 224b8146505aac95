"""What every front end shows: the Answer, its Citations, and the fixed Dutch texts."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..retrieval import Passage

REFUSAL_TEXT = "Dat staat niet in de beschikbare bronnen."
# Why an answer was refused; the UI words each differently.
REFUSAL_NOT_IN_SOURCES = "not_in_sources"
REFUSAL_MISSING_DOCUMENT = "missing_document"
REFUSAL_INSTRUCTION = "instruction"
REFUSAL_TEXTS = {
    REFUSAL_NOT_IN_SOURCES: REFUSAL_TEXT,
    REFUSAL_MISSING_DOCUMENT: "Dat staat niet in de geladen bronnen; het staat mogelijk in een document dat nog niet is toegevoegd.",
    REFUSAL_INSTRUCTION: "Ik beantwoord alleen vragen over de bronnen; instructies aan de assistent volg ik niet.",
}
NOTE_LLM_DOWN = "LLM niet bereikbaar of antwoord onbruikbaar; extractief antwoord getoond."


@dataclass
class Citation:
    """A numbered source of an answer: the passage and the sentence quoted from it."""

    n: int
    passage: Passage
    quote: str
    # Every line the answer quotes from this passage (the first is `quote`), for highlighting.
    quotes: list[str] = field(default_factory=list)

    @property
    def quoted_lines(self) -> list[str]:
        return self.quotes or [self.quote]

    def as_json(self) -> dict:
        p = self.passage
        return {"n": self.n, "doc_id": p.doc_id, "title": p.title, "section": p.section, "page": p.page,
                "page_label": p.page_label, "text": p.text, "quote": self.quote, "quotes": self.quoted_lines,
                "chunk_id": p.chunk_id}


@dataclass
class Answer:
    """What every front end shows: text, refusal flag, citations, passages, backend, notes."""

    question: str
    text: str
    refused: bool
    citations: list[Citation]
    passages: list[Passage]
    backend: str
    notes: list[str] = field(default_factory=list)
    condensed_question: str | None = None
    answerability: float = 0.0
    # Set when refused: one of REFUSAL_NOT_IN_SOURCES / _MISSING_DOCUMENT / _INSTRUCTION.
    refusal_reason: str | None = None
    # Kinds of document the question asks for that are not indexed ("rapport", "handreiking").
    missing_kinds: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "refusal_reason": self.refusal_reason,
            "missing_kinds": self.missing_kinds,
            "backend": self.backend,
            "citations": [
                {k: v for k, v in c.as_json().items() if k != "chunk_id"} for c in self.citations
            ],
            "passages": [
                {"chunk_id": p.chunk_id, "doc_id": p.doc_id, "page": p.page, "page_label": p.page_label,
                 "text": p.text, "score": p.score}
                for p in self.passages
            ],
            "notes": self.notes,
        }
