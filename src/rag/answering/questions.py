"""What a question is: validation, instruction attacks, and the kind of answer it asks for."""

from __future__ import annotations

import re
import unicodedata

from ..errors import QuestionError
from ..lexical import stem

# Words that frame a question rather than name its subject ("how many percent", "tell me"):
# general Dutch/English question vocabulary, so they do not count as what is asked about.
QUESTION_FRAME = frozenset(
    stem(w)
    for w in """procent percentage aandeel deel gemiddeld aantal noem noemen geef vertel
    uitleg leg beschrijf volgens staat stond gaat soort soorten manier manieren precies
    eigenlijk graag welk welke please tell give list main according much many""".split()
) | frozenset(
    # Words that point at the documents themselves ("volgens de factsheet", "in het rapport"):
    # the kinds this assistant's corpus is made of, not what a question is about.
    stem(w)
    for w in """onderzoek onderzoeken studie rapport factsheet handreiking bron bronnen document documenten
    publicatie study report research source document""".split()
)
INJECTION = re.compile(
    r"\b(negeer|vergeet|ignore|disregard|forget)\b.{0,40}\b(opdracht|instructie|instructies|regels|instructions|prompt|alles|wat je"
    r"|bronnen|sources|context)"
    r"|\b(zonder|without)\s+(bronvermelding|bronnen|bron|sources|citations)\b"
    r"|\b(systeemprompt|system prompt|verborgen instructies|hidden instructions|jailbreak)\b"
    r"|\b(je|jouw|uw|your)\s+(opdracht|instructies|regels|prompt|instructions)\b"
    r"|\b(toon|laat zien|print|herhaal|show|reveal)\b.{0,30}\b(prompt|instructies|instructions)\b"
    r"|\b(schrijf|write)\b.{0,20}\b(gedicht|poem|verhaal|story|lied|grap|joke)\b",
    re.IGNORECASE,
)
QUANTITY = re.compile(
    r"\b(hoeveel|hoe ?veel|welk(e)? (deel|percentage|aandeel)|procent|percentage|how many|how much|what share|what percentage)\b",
    re.I,
)
ASKS_DATE = re.compile(
    r"\b(wanneer|welk jaar|welke datum|sinds wanneer|when|what year|which year|what date)\b", re.I
)
ASKS_PERSON = re.compile(r"^\s*(wie|who)\b|\b(door wie|van wie|met wie|by whom)\b", re.I)
# A question may open with a preposition before its question word ("In welk jaar ...?", "Aan
# hoeveel pilots ...?", "In opdracht van wie ...?", "For whom ...?"): a closed class, listed whole.
PREPOSITIONS = frozenset("""aan achter bij binnen boven buiten door in met na naar naast om onder op over per rond
sinds tegen tijdens tot tussen uit van vanaf vanuit via volgens voor zonder about after at before between by
during for from in into of on since through to under with within""".split())
DETERMINERS = frozenset("de het een der den the a an".split())
LIST_QUESTION = re.compile(r"\b(welke|noem|wat zijn|opsomming|which|what are|list)\b", re.I)
OVERVIEW = re.compile(
    r"\b(samenvatting|samenvatten|vat\b.{0,40}\bsamen|waar gaat (het|dit|de|deze)\b.{0,30}\bover|waarover gaat"
    r"|belangrijkste (conclusies|bevindingen|uitkomsten|resultaten)|kernboodschap|in het kort|overzicht van"
    r"|summary|summari[sz]e|what is (the|this) (research|study|report) about|main (findings|conclusions))\b",
    re.I,
)
# Document kinds a question can name; the answer says so when that kind is not indexed.
KIND_WORDS = {
    "rapport": re.compile(r"\b(rapport|rapportage|onderzoeksrapport|eindrapport|report)\b", re.I),
    "handreiking": re.compile(r"\b(handreiking|handreikingen|handvatten|guide|guidance)\b", re.I),
}


# Function words of each language (grammar, not any corpus): enough to tell a Dutch question
# from an English one without loading a language model on the question path.
_DUTCH_FUNCTION = frozenset("""de het een en van in is zijn op te dat die voor met niet wat hoe welke welk waar
wanneer waarom wie er ook als bij aan om of hun ze we ik je u mijn dit deze kan kun moet wordt worden heb heeft
hebben naar over uit door""".split())
ENGLISH_FUNCTION_WORDS = frozenset("""the a an and of in is are on to that for with not what how which where when why
who there also as at by or their they we i you my this these can must be been has have do does from about""".split())


def is_dutch(question: str) -> bool:
    """More Dutch than English function words (a question with neither counts as Dutch)."""
    tokens = re.findall(r"[a-zà-ÿ]+", question.lower())
    return sum(t in _DUTCH_FUNCTION for t in tokens) >= sum(t in ENGLISH_FUNCTION_WORDS for t in tokens)


def named_terms(question: str) -> list[str]:
    """Words a question names rather than describes: capitalised words that do not start a
    sentence, words with digits, acronyms ("Vlaanderen", "2018", "RISC", "WPA2"); hyphenated
    compounds count per part ("Debian-releases" names "Debian"). Users rarely paraphrase
    names, so a name the passages lack is evidence they do not answer the question."""
    found: list[str] = []
    sentence_start = True
    for token in question.split():
        if token in ("—", "–", "-"):  # a dash opens a new clause (condensed follow-ups join with " — ")
            sentence_start = True
            continue
        if not any(ch.isalnum() for ch in token):
            continue  # an emoji or a symbol keeps the sentence start it follows
        word = re.sub(r"'s$", "", token.strip("?,.!:;()'\"“”‘’"))
        for part in re.split(r"[-_/]", word):
            if len(part) > 1 and (
                (part[0].isupper() and not sentence_start) or part.isupper() or any(ch.isdigit() for ch in part)
            ):
                found.append(part)
        sentence_start = token.endswith(("?", ".", "!", ":"))
    return found


def is_instruction(question: str) -> bool:
    """True when the question is an instruction to the assistant rather than a question."""
    return bool(INJECTION.search(question))


def is_overview(question: str) -> bool:
    """True for "summarise it" / "what is it about" questions."""
    return bool(OVERVIEW.search(question))


def kinds_named(question: str) -> list[str]:
    """Document kinds the question names ("Wat zegt het rapport over ..." -> ["rapport"])."""
    return [kind for kind, pattern in KIND_WORDS.items() if pattern.search(question)]


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
