"""Follow-up questions ("En bij gemeenten?") made to stand alone."""

from __future__ import annotations

import re

from ..lexical import content_words, stem, words
from .questions import QUESTION_FRAME

_FOLLOWUP_START = re.compile(r"^\s*(en|maar|ook|and|what about|hoe zit het( dan)? met|en hoe zit het met|idem)\b", re.I)
ACTORS = {
    "gemeent": "gemeenten",
    "samenwerkingsverband": "samenwerkingsverbanden",
    "school": "scholen",
    "ouder": "ouders",
    "leerling": "leerlingen",
    "jeugdhulpaanbieder": "jeugdhulpaanbieders",
    "schoolbestur": "schoolbesturen",
}


def condense_question(question: str, history: list[dict]) -> str:
    """Make a follow-up stand alone using the previous user question (deterministic rule).

    "En bij gemeenten?" after "Hoeveel samenwerkingsverbanden ervaren knelpunten?"
    becomes "Hoeveel gemeenten ervaren knelpunten?". A question that already names
    its subject is returned as is.
    """
    previous = next((m.get("content", "") for m in reversed(history or []) if m.get("role") == "user"), "")
    if not previous:
        return question
    own = [w for w in content_words(question) if w not in QUESTION_FRAME]
    is_followup = bool(_FOLLOWUP_START.match(question)) or len(own) <= 1
    if not is_followup:
        return question
    new_actors = [a for a in ACTORS if any(w.startswith(a) for w in (stem(x) for x in words(question)))]
    if new_actors:
        replaced = previous
        for token in words(previous):
            base = stem(token)
            for actor in ACTORS:
                if base.startswith(actor) and actor not in new_actors:
                    replaced = re.sub(rf"\b{re.escape(token)}\b", ACTORS[new_actors[0]], replaced, count=1, flags=re.I)
        if replaced != previous:
            return replaced
    rest = re.sub(_FOLLOWUP_START, "", question).strip(" ?")
    return f"{previous.rstrip(' ?')} — {rest}?" if rest else previous
