"""The learned reader: which lines of the retrieved passages answer the question.

Every candidate line gets a feature vector that describes it *relative to the question*
(its cosine in standard deviations from the best line, IDF-weighted coverage of the asked
words, whether it has the kind of answer asked for, whether it is itself a question or
document furniture, list structure, passage rank, position, length). A model fit on
labelled question-line pairs (`rag fit-reader`, tuning splits only; see `reader_fit`) turns
the vector into a score; the lines of one question are compared by that score (a
conditional-logit model: a softmax over the question's candidate lines).

The features use no word lists tied to a corpus: only Dutch/English function words
(question words, number words, reason connectives) and the index's IDF.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import conditional_logit
from ..lexical import DUTCH_STOPWORDS, fold_accents, stem, words
from .questions import (
    ASKS_DATE,
    ASKS_PERSON,
    DETERMINERS,
    ENGLISH_FUNCTION_WORDS,
    LIST_QUESTION,
    PREPOSITIONS,
    QUANTITY,
)

MODEL_PATH = Path(__file__).with_name("reader_model.json")

FEATURES = (
    "sim_from_top",       # cosine to the question, in standard deviations below the best line
    "sim_from_mean",      # the same, above the mean line
    "sim_rank",           # 1 / (1 + rank by cosine)
    "overlap",            # IDF-weighted share of the asked words in the line and its headings
    "overlap_line",       # the same, in the line alone
    "overlap_rank",       # 1 / (1 + rank by overlap)
    "compound",           # share of asked words found only inside a longer word of the line
    "focus",              # share of a follow-up's own words in the line (0 for a standalone question)
    "number_match",       # a quantity is asked and the line has one (a number, in digits or words; an amount for a cost)
    "number_missing",     # a quantity is asked and the line has none
    "date_match",         # a date is asked and the line has a year or date
    "person_match",       # a person is asked and the line names someone
    "contact_match",      # a phone number, e-mail or (postal) address is asked and the line has that kind
    "reason_match",       # a reason is asked and the line gives one ("omdat", "because")
    "yes_no_overlap",     # a yes/no question: the line's overlap (it must be about the same thing)
    "is_question",        # the line is itself a question
    "heading_like",       # short, no sentence end: a title, a heading, a navigation link
    "in_heading",         # the line repeats its passage's heading
    "repeated",           # the same line occurs elsewhere in the passages (running text, navigation)
    "capitalised",        # share of capitalised words (titles, author lists)
    "symbols",            # share of code-like symbols (commands, markup)
    "is_item",            # a list item
    "intro",              # the line introduces a list (ends with ':' and items follow)
    "list_item_asked",    # a list is asked and the line is an item or introduces a list
    "passage_rank",       # 1 / (1 + rank of its passage)
    "position",           # 1 / (1 + position of the line in its passage)
    "length",             # log of the line's length in characters
    "short",              # fewer than 25 characters
    "best_in_passage",    # the line is its passage's closest to the question
)

NUMBER_WORD = re.compile(
    r"^(?:(?:een|twee|drie|vier|vijf|zes|zeven|acht|negen|tien|elf|twaalf|dertien|veertien|vijftien|zestien"
    r"|zeventien|achttien|negentien|twintig|dertig|veertig|vijftig|zestig|zeventig|tachtig|negentig|honderd"
    r"|duizend|miljoen|miljard)(?:en)?)+$"
    r"|^(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|thousand"
    r"|million|half|helft|kwart|beide|both|dozen|dozijn|tiental|tientallen|honderden|duizenden)$"
)
# Quantities a question asks for beyond "how many": a grade, a size, a duration, a score.
MEASURE = re.compile(
    r"\b(hoe (hoog|groot|lang|oud|vaak|snel|zwaar|klein|breed)|welk cijfer|welke score|welk bedrag|cijfer|score"
    r"|wat kost|kosten|bedrag|prijs|jaaromzet|salaris|tarief|how (long|big|large|high|old|often|fast)|what score|grade"
    r"|cost|price|turnover|revenue|salary)\b",
    re.I,
)
COST_ASKED = re.compile(r"\b(wat kost|kosten|kost het|bedrag|prijs|budget|geld|uitgaven|jaaromzet|omzet van|salaris|tarief"
                        r"|how much does|cost|price|money|spend|spent|spending|turnover|revenue|salary|fee)\b", re.I)
# A grade asked ("Welk cijfer geven ouders ...?", "What rating ...?") and given ("een 6,4", "7.2 on average").
GRADE_ASKED = re.compile(r"\b(welk(e)? (rapport)?cijfer|rapportcijfer|als cijfer|gemiddeld(e)? cijfer"
                         r"|(what|which) (grade|rating|mark)|(do|does|did|would) \w+( \w+)? rate)\b", re.I)
GRADE = re.compile(r"(?<![\d.,])(10|[1-9])[.,]\d(?![\d.,%])|\been (10|[1-9])\b", re.I)
MONEY = re.compile(r"€|\beuro\b|\bEUR\b|\b\d+(?:[.,]\d+)*\s*(?:miljoen|miljard|duizend)\b|\$\s?\d", re.I)
# Contact details a question can ask for, and how a line gives each (Dutch and international forms).
CONTACT_ASKED = {
    "phone": re.compile(r"\b(telefo\w*|bellen|bel\b|belt\b|phone\w*|telephone)", re.I),
    "email": re.compile(r"\b(e-?mail\w*|mailadres\w*|mailen|mail\b)", re.I),
    # English "address" is also a verb ("How do they address ...?"): only as a noun after a determiner.
    "address": re.compile(r"\b((?!e-?mail|mail|web|internet)\w*adres(sen)?\b|postbus|gevestigd|(the|their|its|his|her|postal|visiting|office|street"
                          r"|mailing) address|located)", re.I),
    "web": re.compile(r"\b(website|webpagina|url|internetadres|webadres)\b", re.I),
}
CONTACT_GIVEN = {
    "phone": re.compile(r"(?<!\d)(\+\d{2}[\s-]?|\(?0\d{1,3}\)?[\s-]?)\d{2,4}[\s-]?\d{2,4}(?:[\s-]?\d{2,4})?(?!\d)"),
    "email": re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),
    # A Dutch postcode ("3511 BS"), a PO box, or a street with a house number; case matters here.
    "address": re.compile(r"\b\d{4}\s?[A-Z]{2}\b|\b([Pp]ostbus|P\.?O\.? Box)\s+\d+|\b[A-Z][\w.]*"
                          r"(straat|weg|laan|plein|gracht|kade|singel|dreef|park|hof|[Ss]treet|[Rr]oad|[Aa]venue)\s+\d+"),
    "web": re.compile(r"https?://|\bwww\.|\b[\w-]+\.(nl|eu|org|com|be)(/\S*)?\b", re.I),
}
REASON_ASKED = re.compile(r"\b(waarom|hoe komt het|om welke reden|reden|oorzaak|why|what causes|reason)\b", re.I)
REASON_GIVEN = re.compile(
    r"\b(omdat|doordat|want|daardoor|daarom|zodat|vanwege|dankzij|waardoor|reden|oorzaak|because|since|due to"
    r"|therefore|so that)\b",
    re.I,
)
QUESTION_WORD = re.compile(
    r"^\s*(wie|wat|waar|wanneer|waarom|hoe|hoeveel|welk|welke|waarmee|waardoor|waarvoor|waarop|waaraan|waaruit"
    r"|who|what|where|when|why|how|which|whom|whose|noem|geef|vertel|leg|beschrijf|list|name|give|tell|explain)\b",
    re.I,
)
_DATE = re.compile(
    r"\b(1[89]\d\d|20\d\d)\b|\b\d{1,2} (januari|februari|maart|april|mei|juni|juli|augustus|september|oktober"
    r"|november|december|january|february|march|may|june|july|august|october)\b",
    re.I,
)
_YEAR = re.compile(r"(?<![\d.,])(19|20)\d\d(/\d\d)?(?![\d.,%]\d?)")
_SYMBOLS = set("{}[]\\#=<>|_$~^/*")
_CHATTER = re.compile(r"^\s*(en|maar|ook|oké|ok|and|but|so)\b[,]?\s*", re.I)


@dataclass(frozen=True)
class AskedFor:
    """What kind of answer a question asks for."""

    quantity: bool
    cost: bool
    date: bool
    person: bool
    reason: bool
    yes_no: bool
    listing: bool
    contact: str | None = None  # "phone", "email", "address" or "web"
    grade: bool = False


def opens_with_question_word(question: str) -> bool:
    """A question word first, or after an opening preposition phrase of up to three words ("In
    welk jaar", "Aan hoeveel", "In opdracht van wie", "For whom"): not a yes/no question."""
    if QUESTION_WORD.match(question):
        return True
    tokens = words(question)[:4]
    return bool(tokens) and tokens[0] in PREPOSITIONS and any(QUESTION_WORD.fullmatch(t) for t in tokens[1:])


def own_question(question: str) -> str:
    """What a condensed follow-up asks itself: its last part after " — " when that is a question
    of its own ("Hoeveel gemeenten ervaren knelpunten — Waar lopen gemeenten dan vooral op vast?":
    the second asks no quantity); a fragment ("... — bij de gemeenten?", "— ontevreden?") asks
    what the question before it asked, so the whole is read."""
    if " — " not in question:
        return question
    last = _CHATTER.sub("", question.rsplit(" — ", 1)[1])
    tokens = words(last)
    if opens_with_question_word(last):
        return last
    if len(tokens) >= 3 and tokens[0] not in PREPOSITIONS and tokens[0] not in DETERMINERS:
        return last  # a yes/no question: "Scheelt het ook in de papierwinkel?"
    return question


def asked_for(question: str) -> AskedFor:
    """The answer types a question asks for, from its question words (a condensed follow-up's
    from its own part, see `own_question`)."""
    q = _CHATTER.sub("", own_question(question))
    grade = bool(GRADE_ASKED.search(q))
    return AskedFor(
        quantity=bool(QUANTITY.search(q) or MEASURE.search(q)) or grade,
        cost=bool(COST_ASKED.search(q)),
        date=bool(ASKS_DATE.search(q)),
        person=bool(ASKS_PERSON.search(q)),
        reason=bool(REASON_ASKED.search(q)),
        yes_no=not opens_with_question_word(q),
        listing=bool(LIST_QUESTION.search(q)),
        contact=_contact_asked(q),
        grade=grade,
    )


def _contact_asked(question: str) -> str | None:
    """The kind of contact detail asked for; of several, the last named: a condensed follow-up
    ends with its own words ("Hoe kan ik Oberon telefonisch bereiken — Wat is Oberon postadres?")."""
    found = [(m.start(), kind) for kind, pattern in CONTACT_ASKED.items() for m in pattern.finditer(question)]
    return max(found)[1] if found else None


def has_number(text: str) -> bool:
    """Digits, or a quantity written in words ("twaalf scholen", "beide"); digits inside a name
    ("G4", "WPA2") and a year ("In 2019 schreven ...") are no quantity."""
    if re.search(r"(?<![^\W\d_])\d", _YEAR.sub(" ", text)):
        return True
    return any(NUMBER_WORD.match(w) for w in words(text) if w not in ("een", "en"))


_COUNT_TOKEN = re.compile(r"\d+(?:[.,]\d+)*%?|%|\w+")
_SHARE_WORDS = ("procent", "percentage", "percent")
_NOT_COUNTED = frozenset(("deel", "aandeel", "many", "much", "ongeveer", "precies", "zo"))


def counted_noun(question: str) -> str | None:
    """What a "hoeveel"/"how many" question counts (folded): the first content word of the three
    after it ("Hoeveel scholen doen mee?" -> "scholen"), "%" for a share ("Hoeveel procent ...");
    None when the question counts nothing. A condensed follow-up's own part decides."""
    tokens = _COUNT_TOKEN.findall(fold_accents(own_question(question)).lower())
    for i, token in enumerate(tokens):
        if token == "hoeveel" or (token == "how" and tokens[i + 1:i + 2] in (["many"], ["much"])):
            for word in tokens[i + 1:i + 4]:
                if word in _SHARE_WORDS:
                    return "%"
                if not (word in _NOT_COUNTED or word in DUTCH_STOPWORDS or word in ENGLISH_FUNCTION_WORDS
                        or word[:1].isdigit()):
                    return word
            return None
    return None


def gives_count_of(text: str, noun: str) -> bool:
    """A number of the counted thing: a number (digits or words) with `noun` (or its stem) up to
    four words before it or three after ("elf scholen", "het aantal thuiszitters steeg van 41");
    for "%" a percentage."""
    tokens = _COUNT_TOKEN.findall(fold_accents(text).lower())
    noun_stem = stem(noun)
    for i, token in enumerate(tokens):
        if not (token[:1].isdigit() or (token != "een" and NUMBER_WORD.match(token))):
            continue
        if noun == "%":
            if token.endswith("%") or tokens[i + 1:i + 2] in (["%"], ["procent"], ["percent"]):
                return True
            continue
        if any(w == noun or stem(w) == noun_stem for w in tokens[max(0, i - 4):i] + tokens[i + 1:i + 4]):
            return True
    return False


def years(text: str) -> set[str]:
    """The years a text names ("in 2021", "2019/20" gives "2019")."""
    return {m.group(0)[:4] for m in _YEAR.finditer(text)}


def has_amount(text: str, asked: AskedFor) -> bool:
    """The kind of quantity asked for: an amount of money for a cost, a grade for a grade ("een
    6,4"), else any number."""
    if asked.cost:
        return bool(MONEY.search(text))
    return bool(GRADE.search(text)) if asked.grade else has_number(text)


def has_date(text: str) -> bool:
    """A year or a day and month."""
    return bool(_DATE.search(text))


def gives_contact(text: str, kind: str | None) -> bool:
    """The line gives the kind of contact detail asked for (a phone number, an e-mail address ...)."""
    return bool(kind) and bool(CONTACT_GIVEN[kind].search(text))


def names_someone(text: str) -> bool:
    """A capitalised word that does not start a sentence, or an acronym: a person or organisation."""
    tokens = text.split()
    return bool(re.search(r"\b[A-Z]{2,}\b", text)) or any(
        t[:1].isupper() and i > 0 and not tokens[i - 1].endswith((".", ":", "?", "!")) for i, t in enumerate(tokens)
    )


def _compound_share(weights: dict[str, float], line_text: str, exact: set[str]) -> float:
    """Share of the asked words' weight that occurs only inside a longer word of the line
    ("pakket" in "pakketbeheerder"): Dutch writes compounds as one word."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    folded = [w for w in words(line_text) if len(w) > 6]
    found = 0.0
    for word, weight in weights.items():
        if word in exact or len(word) < 4:
            continue
        if any(word in long_word and long_word != word for long_word in folded):
            found += weight
    return found / total


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the largest value, 1 for the next ...; ties share the better rank."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):  # ties share the best rank
        same = values == value
        ranks[same] = ranks[same].min()
    return ranks


def line_features(question: str, candidates, sims: np.ndarray, weights: dict[str, float], focus: dict[str, float],
                  coverage, sections: list[str]) -> np.ndarray:
    """The feature matrix (one row per candidate line, columns as FEATURES).

    `candidates` are `extractive.Candidate`s (text, passage_index, position, is_item, words,
    line_words); `sims` their cosines to the question; `weights` the asked words' IDF
    weights and `focus` a follow-up's own words; `coverage(weights, vocabulary)` the
    weighted share of asked words found; `sections` each passage's heading path."""
    n = len(candidates)
    asked = asked_for(question)
    top, mean, spread = float(sims.max()), float(sims.mean()), max(float(sims.std()), 1e-3)
    overlap = np.array([coverage(weights, c.words) for c in candidates])
    overlap_line = np.array([coverage(weights, c.line_words) for c in candidates])
    texts = [c.text for c in candidates]
    folded = [fold_accents(t).strip(" .:") for t in texts]
    counts: dict[str, int] = {}
    for t in folded:
        counts[t] = counts.get(t, 0) + 1
    best_in_passage: dict[int, float] = {}
    for c, s in zip(candidates, sims):
        best_in_passage[c.passage_index] = max(best_in_passage.get(c.passage_index, -9.0), float(s))
    sim_rank, overlap_rank = _ranks(sims), _ranks(overlap)
    rows = np.zeros((n, len(FEATURES)), dtype=np.float32)
    for i, c in enumerate(candidates):
        text = texts[i]
        stripped = text.rstrip()
        number = has_amount(text, asked)
        heading_path = fold_accents(sections[c.passage_index])
        next_is_item = i + 1 < n and candidates[i + 1].passage_index == c.passage_index and candidates[i + 1].is_item
        intro = stripped.endswith(":") and next_is_item
        tokens = text.split()
        letters = max(len(text), 1)
        rows[i] = (
            (sims[i] - top) / spread,
            (sims[i] - mean) / spread,
            1.0 / (1.0 + sim_rank[i]),
            overlap[i],
            overlap_line[i],
            1.0 / (1.0 + overlap_rank[i]),
            _compound_share(weights, text, c.words),
            coverage(focus, c.words) if focus else 0.0,
            float(asked.quantity and number),
            float(asked.quantity and not number),
            float(asked.date and has_date(text)),
            float(asked.person and names_someone(text)),
            float(gives_contact(text, asked.contact)),
            float(asked.reason and bool(REASON_GIVEN.search(text))),
            overlap[i] if asked.yes_no else 0.0,
            float(stripped.endswith("?")),
            float(not c.is_item and not stripped.endswith((".", "!", "?", ":", ";")) and len(tokens) <= 8),
            float(len(folded[i]) > 2 and folded[i] in heading_path),
            float(min(counts[folded[i]] - 1, 3)),
            sum(t[:1].isupper() for t in tokens) / max(len(tokens), 1),
            sum(ch in _SYMBOLS for ch in text) / letters,
            float(c.is_item),
            float(intro),
            float(asked.listing and (c.is_item or intro)),
            1.0 / (1.0 + c.passage_index),
            1.0 / (1.0 + c.position),
            math.log1p(len(text)),
            float(len(text) < 25),
            float(sims[i] >= best_in_passage[c.passage_index]),
        )
    return rows


# -- the fitted model -----------------------------------------------------------------
_lock = threading.Lock()
_loaded: dict[Path, dict] = {}


def load_model(path: Path = MODEL_PATH) -> dict:
    """The fitted reader (features, standardisation, weights, selection margins) from JSON."""
    path = Path(path)
    with _lock:
        if path not in _loaded:
            data = json.loads(path.read_text(encoding="utf-8"))
            if tuple(data["features"]) != FEATURES:
                raise ValueError(f"{path} was fit on other features; run `rag fit-reader`")
            for key in ("mean", "scale", "coef"):
                data[key] = np.asarray(data[key], dtype=np.float32)
            if data.get("hidden"):
                data["hidden"] = {k: np.asarray(v, dtype=np.float32) for k, v in data["hidden"].items()}
            _loaded[path] = data
        return _loaded[path]


def forget_loaded_models() -> None:
    """Drop cached model files (after `rag fit-reader` wrote a new one)."""
    with _lock:
        _loaded.clear()


def scores(matrix: np.ndarray, model: dict) -> np.ndarray:
    """One score per candidate line (higher = more likely the answer); comparable within a question."""
    return conditional_logit.scores(matrix, model)
