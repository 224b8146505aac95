"""Follow-up questions ("En bij gemeenten?") made to stand alone."""

from __future__ import annotations

import re

from ..lexical import content_words
from .questions import QUESTION_FRAME, is_instruction

_FOLLOWUP_START = re.compile(
    r"^\s*(en|maar|ook|and|what about|how about|hoe zit het( dan)? met|en hoe zit (het|dat)( dan)?( met| bij)?|idem)\b", re.I
)

# Chat openers that say nothing ("Oké, en ...").
_DISCOURSE = re.compile(r"^\s*(oké|oke|ok|okay|goed|ja|nee|dus|so|right|well|alright)\b[,.!]?\s*", re.I)
# Words that point back at the previous turn: "daarvan", "ze", "toen", "Maakt die ...",
# "In welk vakblad is dat verschenen?". Not "dan" (also "than") nor a bare "dat" (also "that" as a conjunction).
_ANAPHORA = re.compile(
    r"\b(daar(?:van|bij|in|mee|voor|over|door|naast)|hiervan|ze|zij|toen|they|them|those)\b"
    r"|\b(is|zijn|was|waren|heeft|hebben|doet|kost|werkt|maakt|betekent)\s+(dat|die)\b"
    r"|^\s*(die|dat|deze)\b",
    re.I,
)

def is_follow_up(question: str) -> bool:
    """A question that leans on the previous one: starts like "En ...?", points back ("daarvan",
    "is dat") or names at most one subject word ("knelpunten?", "Wie heeft het betaald?")."""
    question = _DISCOURSE.sub("", question)
    own = [w for w in content_words(question) if w not in QUESTION_FRAME]
    return bool(_FOLLOWUP_START.match(question) or _ANAPHORA.search(question)) or len(own) <= 1


def _joined(question: str, previous: str) -> str:
    rest = _FOLLOWUP_START.sub("", _DISCOURSE.sub("", question)).strip(" ?")
    return f"{previous.rstrip(' ?')} — {rest}?" if rest else previous


def condense_question(question: str, history: list[dict]) -> str:
    """Make a follow-up stand alone with the previous user question (deterministic rule).

    "En bij gemeenten?" after "Hoeveel samenwerkingsverbanden ervaren knelpunten?" becomes
    "Hoeveel samenwerkingsverbanden ervaren knelpunten — bij gemeenten?": retrieval sees both,
    and the answerer weighs the follow-up's own words above the carried-over ones. A question
    that names its own subject is returned as is.
    """
    previous = ""
    # Earlier questions are made to stand alone in turn, so a chain of follow-ups keeps its
    # subject; instructions to the assistant (refused) are no context for what follows.
    for message in history or []:
        earlier = message.get("content", "") if message.get("role") == "user" else ""
        if earlier and not is_instruction(earlier):
            previous = _joined(earlier, previous) if previous and is_follow_up(earlier) else earlier
    if not previous or not is_follow_up(question):
        return question
    return _joined(question, previous)
