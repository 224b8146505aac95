"""What a question is: validation, instruction attacks, and the kind of answer it asks for."""

from __future__ import annotations

import re
import unicodedata

from ..errors import QuestionError
from ..lexical import stem

# Words that frame a question rather than name its subject: they must not count
# towards "the sources mention what was asked".
QUESTION_FRAME = frozenset(
    stem(w)
    for w in """procent percentage aandeel deel gemiddeld aantal noem noemen geef vertel
    uitleg leg beschrijf onderzoek rapport factsheet bron bronnen document documenten
    volgens staat stond gaat soort soorten manier manieren precies eigenlijk graag
    please tell give list main according research""".split()
)
_INJECTION = re.compile(
    r"\b(negeer|vergeet|ignore|disregard|forget)\b.{0,40}\b(opdracht|instructie|instructies|regels|instructions|prompt|alles|wat je)"
    r"|\b(systeemprompt|system prompt|verborgen instructies|hidden instructions|jailbreak)\b"
    r"|\b(je|jouw|uw|your)\s+(opdracht|instructies|regels|prompt|instructions)\b"
    r"|\b(toon|laat zien|print|herhaal|show|reveal)\b.{0,30}\b(prompt|instructies|instructions)\b"
    r"|\b(schrijf|write)\b.{0,20}\b(gedicht|poem|verhaal|story|lied|grap|joke)\b",
    re.IGNORECASE,
)
_QUANTITY = re.compile(r"\b(hoeveel|welk(e)? (deel|percentage|aandeel)|hoe ?veel|procent|percentage|how many|what share)\b", re.I)
_LIST_Q = re.compile(r"\b(welke|noem|wat zijn|wat levert|opsomming|which|what are)\b", re.I)


def validate_question(text: str, max_chars: int = 2000) -> str:
    """Normalise a question; raise QuestionError when empty or too long."""
    if text is None:
        text = ""
    text = unicodedata.normalize("NFC", str(text))
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in text)
    text = " ".join(text.split())
    if not text:
        raise QuestionError("The question is empty; type a question.", "Stel een vraag: het invoerveld is leeg.")
    if len(text) > max_chars:
        raise QuestionError(
            f"The question is {len(text)} characters; the limit is {max_chars}. Shorten it.",
            f"De vraag is te lang ({len(text)} tekens, maximaal {max_chars}). Maak hem korter.",
        )
    return text
