"""[n] markers <-> passages: parse, clean, check support, highlight spans."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .lexical import content_words, fold_accents

_MARKER = re.compile(r"\[(\d{1,3})\]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
# Share of a sentence's content words that must occur in its cited passages for the
# sentence to count as supported (offline ALCE-style check). Verbatim extractive
# sentences score 1.0; 0.5 lets a fluent paraphrase through while catching sentences
# that talk about something the passage does not mention.
SUPPORT_OVERLAP = 0.5


_NAME = re.compile(r"[A-Za-zÀ-ÿ][\w'’-]*")


@dataclass
class SentenceCheck:
    """One answer sentence, the passages it cites, and whether they support it."""

    sentence: str
    cited: list[int]
    supported: bool
    missing_numbers: list[str]
    overlap: float
    missing_names: list[str] = field(default_factory=list)


def names_in(sentence: str) -> list[str]:
    """Proper names and acronyms in a sentence: capitalised words not starting a clause, and
    any word with two or more capitals (OCW, NRO; G4 is caught by its number)."""
    out: list[str] = []
    body = _MARKER.sub("", sentence)
    for m in _NAME.finditer(body):
        word = m.group(0).strip("'’-")
        if not word:
            continue
        before = body[: m.start()].rstrip()
        clause_start = not before or before[-1] in ".!?:;(\"'“‘-•*✓✗"
        capitals = sum(ch.isupper() for ch in word)
        if capitals >= 2 or (word[0].isupper() and not clause_start):
            out.append(word)
    return out


def markers(text: str) -> list[int]:
    """All [n] numbers in order of appearance."""
    return [int(m) for m in _MARKER.findall(text)]


def drop_invalid_markers(text: str, valid: int) -> tuple[str, list[int]]:
    """Remove [n] markers outside 1..valid; return cleaned text and the dropped numbers."""
    dropped: list[int] = []

    def repl(m: re.Match) -> str:
        n = int(m.group(1))
        if 1 <= n <= valid:
            return m.group(0)
        dropped.append(n)
        return ""

    cleaned = _MARKER.sub(repl, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), dropped


def numbers_in(text: str) -> list[str]:
    """Numbers in a text, normalised ('1.200' and '1,200' kept as written)."""
    return _NUMBER.findall(_MARKER.sub("", text))


def split_answer_sentences(text: str) -> list[str]:
    """Split an answer into sentences/lines, keeping each sentence's trailing [n] markers;
    a piece ending in an abbreviation or an initial ("St.", "wethouder M.") is joined to the next one."""
    from .chunking import continues_sentence

    pieces: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|(?<=\])\s+(?=[A-Z\"'(-])", line)
        for part in (p.strip() for p in parts if p.strip()):
            if pieces and not markers(pieces[-1]) and continues_sentence(pieces[-1], part):
                pieces[-1] = f"{pieces[-1]} {part}"
            else:
                pieces.append(part)
    return pieces


def check_sentence(sentence: str, passages: list[str]) -> SentenceCheck:
    """Is the sentence supported by its cited passages ([n] = passages[n-1])?

    Supported means: its numbers and names occur verbatim in the cited passages and at
    least SUPPORT_OVERLAP of its content words do.
    """
    cited = markers(sentence)
    texts = [passages[n - 1] for n in cited if 1 <= n <= len(passages)]
    body = _MARKER.sub("", sentence)
    if not texts:
        return SentenceCheck(sentence, cited, False, numbers_in(body), 0.0, names_in(body))
    haystack = fold_accents(" ".join(texts))
    hay_numbers = set(numbers_in(haystack))
    missing = [n for n in numbers_in(body) if n not in hay_numbers]
    hay_tokens = set(re.findall(r"\w+", haystack))
    missing_names = [w for w in names_in(body) if not any(ch.isdigit() for ch in w) and fold_accents(w) not in hay_tokens]
    words = content_words(body)
    hay_words = set(content_words(haystack))
    overlap = sum(1 for w in words if w in hay_words) / len(words) if words else 1.0
    supported = not missing and not missing_names and overlap >= SUPPORT_OVERLAP
    return SentenceCheck(sentence, cited, supported, missing, overlap, missing_names)


def supports(sentence: str, passages: list[str]) -> bool:
    """The support rule of `check_sentence`, against these passage texts whatever the markers say."""
    if not passages:
        return False
    body = _MARKER.sub("", sentence)
    return check_sentence(f"{body} [1]", [" ".join(passages)]).supported


def check_answer(text: str, passages: list[str]) -> list[SentenceCheck]:
    """Check every sentence that carries at least one [n] marker or a number."""
    return [check_sentence(s, passages) for s in split_answer_sentences(text) if markers(s) or numbers_in(s)]


def highlight_spans(passage: str, quote: str | list[str]) -> list[tuple[str, bool]]:
    """Split passage text into (segment, is_quoted) parts, marking where the quote, or each of
    several quoted lines, occurs.

    Matching ignores whitespace differences; a quote not found verbatim is left unmarked (all
    of them: the whole passage is returned unmarked).
    """
    marks: list[tuple[int, int]] = []
    for one in [quote] if isinstance(quote, str) else quote:
        one = " ".join(one.split())
        if not one:
            continue
        pattern = r"\s+".join(re.escape(part) for part in one.split(" "))
        match = re.search(pattern, passage)
        if match:
            marks.append((match.start(), match.end()))
    out: list[tuple[str, bool]] = []
    at = 0
    for start, end in sorted(marks):
        start = max(start, at)  # overlapping quotes: mark the union
        if start > at:
            out.append((passage[at:start], False))
        if end > start:
            out.append((passage[start:end], True))
            at = end
    if at < len(passage) or not out:
        out.append((passage[at:], False))
    return out
