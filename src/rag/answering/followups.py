"""Follow-up questions ("En bij gemeenten?", "Hoe tevreden zijn ze?") made to stand alone.

A follow-up takes the previous turn's *subject*, not the whole previous question:

- a question with a subject of its own (no word pointing back, not a fragment) stands alone,
  and so does one in another language than the previous turn unless it points back;
- a personal or possessive pronoun ("ze", "hun", "zijn mailadres", "they", "his") is replaced
  by the group the previous question named, or by the name the previous answer gave when that
  question asked who or which one ("Welk bureau ...?" "Oberon, ..."); the new question keeps
  its own predicate;
- "toen"/"then"/"sindsdien" becomes the previous turn's year;
- other words that point back ("daarvan", "die", "is dat", "it") and fragments ("En bij
  gemeenten?", "And for municipalities?") are read against the previous question.

Language and word forms come from `simplemma` (its language detector and lemmas), so the
rule holds for any Dutch or English corpus; it costs no forward pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..lexical import DUTCH_STOPWORDS, content_words, fold_accents
from .questions import DETERMINERS, ENGLISH_FUNCTION_WORDS, QUESTION_FRAME, is_instruction

LANGUAGES = ("nl", "en")
# simplemma's share of known words per language; a question is only said to be in one
# language when that language leads clearly (short questions such as "pilots?" are neither).
LANGUAGE_MIN_SHARE = 0.5
LANGUAGE_MARGIN = 0.3

_FOLLOWUP_START = re.compile(
    r"^\s*(en hoe zit (het|dat)( dan)?( met)?|hoe zit het( dan)? met|what about|how about"
    r"|en|maar|ook|and|but|also|idem)\b[,]?\s*",
    re.I,
)
# Chat openers that say nothing ("Oké, en ...").
_DISCOURSE = re.compile(r"^\s*(oké|oke|ok|okay|goed|ja|nee|dus|so|right|well|alright)\b[,.!]?\s*", re.I)
_TOKEN = re.compile(r"[\w’']+(?:[./-][\w’']+)*", re.U)

# Closed word classes of Dutch and English (grammar, not any corpus's vocabulary).
QUESTION_WORDS = frozenset(
    "wie wat waar wanneer waarom hoe hoeveel welke welk waarmee waarover waardoor waarvoor waaruit"
    " who what where when why how which whom whose".split()
)
PERSONAL = frozenset("ze zij hun hen they them their his her".split())
# "zijn"/"haar" are also a verb and a noun; they point back only as a possessive (see `pointers`).
POSSESSIVE = frozenset("zijn haar".split())
# Words after which "zijn"/"haar" can only be a possessive: a copula, a preposition, a subject pronoun.
POSSESSIVE_AFTER = frozenset(
    "is was wordt werd blijft bleef heeft had van met bij voor naar over door aan op in uit om tot volgens ik je jij u we wij".split()
)
DEMONSTRATIVE = frozenset("die deze those these".split())
NEUTER = frozenset("dat het dit it that this".split())
THEN = frozenset("toen then sindsdien".split())
_POINTING_ADVERB = re.compile(r"^(daar|daar(van|bij|in|mee|voor|over|door|naast|aan|op|uit|na|om)|hier(van|bij|in|mee|over|voor))$")
# What may follow "het"/"dat" used as a pronoun ("Scheelt het ook ...", "Geldt dat dan ...").
PRONOUN_FOLLOWERS = frozenset(
    "ook dan nog wel niet al echt eigenlijk precies toch nou eens weer wel nu pas alleen"
    " also too then really still".split()
)
# Prepositions a contrasting fragment starts with ("En bij gemeenten?", "And for municipalities?").
CONTRAST_PREPOSITIONS = frozenset("bij voor van in onder op for in among at with of".split())
ENGLISH_AUXILIARIES = frozenset("is are was were do does did can could has have had will would should may".split())
# Dutch adverbs and prepositions whose lemma ends like an infinitive ("morgen", "alleen"): no verb.
NOT_VERBS = frozenset(
    "morgen overmorgen gisteren eergisteren binnen buiten boven beneden tegen tussen samen even meteen"
    " misschien alleen eigen open".split()
)
_WHICH = frozenset("welke welk which what".split())
# Dutch name particles ("Michiel van der Grinten").
NAME_PARTICLES = frozenset("van der de den ter ten von".split())
# Capitalised words that start a sentence, not a name ("Het onderzoek ...", "It was ...").
_NOT_A_NAME = DUTCH_STOPWORDS | ENGLISH_FUNCTION_WORDS | frozenset("but was were it".split())
_CITATION = re.compile(r"\[\d+\]|Volgens [^:]{0,160}:\s*")
_YEAR = re.compile(r"(19|20)\d\d(/\d\d)?")


@lru_cache(maxsize=1)
def _simplemma():
    import simplemma

    return simplemma


@lru_cache(maxsize=4096)
def language(text: str) -> str | None:
    """"nl" or "en" when the text is clearly in that language (simplemma's detector), else None."""
    scores = dict(_simplemma().langdetect(text, lang=LANGUAGES))
    ranked = sorted(LANGUAGES, key=lambda lang: -scores.get(lang, 0.0))
    top, second = scores.get(ranked[0], 0.0), scores.get(ranked[1], 0.0)
    return ranked[0] if top >= LANGUAGE_MIN_SHARE and top - second >= LANGUAGE_MARGIN else None


@lru_cache(maxsize=8192)
def _lemma(word: str, lang: str) -> str:
    return _simplemma().lemmatize(word, lang=lang).lower()


def _is_verb(word: str, lang: str) -> bool:
    """A verb form, from its lemma: Dutch verbs lemmatise to an infinitive ("ervaart" -> "ervaren",
    "is" -> "zijn"); English has too few endings, so only its auxiliaries count."""
    low = word.lower()
    if lang == "en":
        return low in ENGLISH_AUXILIARIES
    if low in NOT_VERBS:
        return False
    lemma = _lemma(low, "nl")
    return lemma.endswith(("en", "aan", "oen", "ien")) and len(lemma) > 3 or lemma in ("zijn", "gaan", "doen", "zien", "staan")


def _is_plural(word: str, lang: str) -> bool:
    """A plural noun: its lemma drops a plural ending ("gemeenten" -> "gemeente", "pilots" -> "pilot")."""
    low = word.lower()
    lemma = _lemma(low, lang)
    if lemma == low:
        return lang == "nl" and low.endswith("ers") and len(low) > 5
    return low.endswith(("en", "s")) and not lemma.endswith("en")


@dataclass
class _Turn:
    """One user question, read for what it asks about."""

    text: str
    rest: str  # without chat openers ("Oké, en")
    tokens: list[str]
    lang: str
    opener: bool

    @classmethod
    def read(cls, question: str) -> "_Turn":
        text = _DISCOURSE.sub("", question.strip())
        opener = _FOLLOWUP_START.match(text)
        rest = text[opener.end():] if opener else text
        lang = language(question) or "nl"
        return cls(question, rest.strip(), _TOKEN.findall(rest), lang, bool(opener))

    def plain(self) -> str:
        """The question without chat openers ("Oké, en ..."), capitalised; as is when none."""
        if self.rest == self.text.strip():
            return self.text
        return self.rest[:1].upper() + self.rest[1:]

    def own_words(self) -> list[str]:
        """Subject words: content tokens that are not question framing."""
        return [w for w in content_words(self.rest) if w not in QUESTION_FRAME]

    def is_fragment(self) -> bool:
        """No question word, and no verb or at most two words: "bij gemeenten?", "het postadres?",
        "knelpunten?", "En ontevreden?"."""
        if any(t.lower() in QUESTION_WORDS for t in self.tokens):
            return False
        return len(self.tokens) <= 2 or not any(_is_verb(t, self.lang) for t in self.tokens)

    def pointers(self) -> list[tuple[int, str]]:
        """Words that point back at the previous turn, with their position and kind
        ("personal", "then", "other")."""
        found = []
        low = [t.lower() for t in self.tokens]
        for i, word in enumerate(low):
            before = low[i - 1] if i else ""
            after = low[i + 1] if i + 1 < len(low) else ""
            if word in PERSONAL or (word in POSSESSIVE and self._possessive(i, before, after)):
                found.append((i, "personal"))
            elif word in THEN:
                found.append((i, "then"))
            elif _POINTING_ADVERB.match(word):
                found.append((i, "other"))
            elif word in DEMONSTRATIVE and (i == 0 or not after or before in DUTCH_STOPWORDS
                                            or _is_verb(self.tokens[i - 1], self.lang)):
                found.append((i, "other"))  # not the relative "die" of "gemeenten die integraal werken"
            elif word in NEUTER and self._neuter_points_back(i, before, after):
                found.append((i, "other"))
        return found

    def _possessive(self, i: int, before: str, after: str) -> bool:
        """"zijn"/"haar" before a noun, after a copula, a preposition or a subject pronoun
        ("Wat is zijn mailadres?", "met haar team", "Hoe bereik ik zijn secretariaat?"), not the
        verb of "Wat zijn de kosten?" or "Hoe tevreden zijn ze?"."""
        if not after:
            return self.tokens[i].lower() == "haar" and bool(i)
        if after in DUTCH_STOPWORDS or after in DETERMINERS or _is_verb(self.tokens[i + 1], self.lang):
            return False
        return before in POSSESSIVE_AFTER

    def asks_which_one(self) -> bool:
        """Asks who, or which single one ("Welk bureau ...?", "Which firm ...?"): the answer names it."""
        if re.search(r"\b(wie|who|whom)\b", self.text, re.I):
            return True
        low = [t.lower() for t in self.tokens]
        return any(t in _WHICH and i + 1 < len(low) and low[i + 1] not in DETERMINERS
                   and not _is_plural(self.tokens[i + 1], self.lang) for i, t in enumerate(low))

    def _neuter_points_back(self, i: int, before: str, after: str) -> bool:
        """"het"/"dat"/"it" as a pronoun ("Wie heeft het betaald?", "Geldt dat ook ...?", "is dat"),
        not as an article ("het onderzoek") or a conjunction ("Klopt het dat gemeenten ...")."""
        word = self.tokens[i].lower()
        if word == "it" or (word in ("that", "this") and (not after or after in PRONOUN_FOLLOWERS)):
            return True
        if word in ("that", "this"):
            return before in ENGLISH_AUXILIARIES
        if after in ("dat", "of", "met", "om", "te") or before in ("zit", "gaat", "ging"):
            return False  # expletive "het": "Klopt het dat ...", "Hoe zit het met ...", "Hoe gaat het ..."
        if not after or after in PRONOUN_FOLLOWERS or (after not in DETERMINERS and _is_verb(self.tokens[i + 1], "nl")):
            return True
        if word == "dat" and before not in ("het", "zo", "") and _is_verb(self.tokens[i - 1], "nl") and after not in PERSONAL:
            return True  # "Wie hebben dat geschreven?", "is dat de standaard?"
        return i == 0 and word in ("dat", "dit")

    def candidates(self) -> list[str]:
        """Words that can name what this turn is about (surface forms, in order): not question
        words, articles, verbs, framing or pronouns."""
        out = []
        for t in self.tokens:
            low = fold_accents(t)
            if (low in DUTCH_STOPWORDS or low in QUESTION_WORDS or low in PERSONAL or len(low) < 2
                    or _is_verb(t, self.lang) or any(w in QUESTION_FRAME for w in content_words(t))):
                continue
            out.append(t)
        return out

    def group(self) -> list[str]:
        """The group a "ze"/"they" in the next turn refers to: a name ("Oberon"); else what
        "hoeveel"/"how many" counted; else a plural noun that "welke"/"which" did not ask for."""
        words = self.candidates()
        names = [w for w in words if w[:1].isupper() and self.tokens.index(w) > 0]
        if names:
            return names
        low = [t.lower() for t in self.tokens]
        for i, t in enumerate(low):
            if t == "hoeveel" or (t == "how" and low[i + 1:i + 2] in (["many"], ["much"])):
                counted = [w for w in self.tokens[i + 1:] if w in words and _is_plural(w, self.lang)]
                if counted:
                    return counted[:1]
        plurals = [w for w in words if _is_plural(w, self.lang)]
        asked = {self.tokens[i + 1] for i, t in enumerate(low[:-1]) if t in _WHICH}
        actors = [w for w in plurals if w not in asked]
        return (actors or plurals)[:1] or words

    def years(self) -> list[str]:
        return [t for t in self.tokens if _YEAR.fullmatch(t)]

    def names(self) -> list[str]:
        """The names the question uses: runs of capitalised words after its first word ("Regio Veenmarke")."""
        names, run = [], []
        for i, t in enumerate(self.tokens):
            if i and t[:1].isupper() and fold_accents(t) not in _NOT_A_NAME:
                run.append(t)
            elif run:
                names.append(" ".join(run))
                run = []
        return names + ([" ".join(run)] if run else [])


def named_in_answer(answer: str) -> list[str]:
    """The first name(s) an answer gives ("Oberon, een ..." -> ["Oberon"]; "Bij Michiel van der
    Grinten." -> ["Michiel", "van", "der", "Grinten"]; "Marjolein Bomhof en Miriam Walraven"
    both): capitalised words that are not function words, joined by name particles or "en"/"and";
    citation markers and a "Volgens ...:" lead are skipped."""
    tokens = _CITATION.sub(" ", answer).split()
    name: list[str] = []
    joiners: list[str] = []
    for token in tokens:
        word = token.strip("(),.;:!?\"'‘’“”")
        if word[:1].isupper() and fold_accents(word) not in _NOT_A_NAME:
            name += joiners + [word]
            joiners = []
        elif name and (word.lower() in NAME_PARTICLES or word.lower() in ("en", "and")) and len(joiners) < 2:
            joiners.append(word)
        elif name:
            break
        if name and token.endswith((",", ".", ";", ":", "!", "?")):
            break
    return name


def needs_context(question: str, previous: str) -> bool:
    """True when `question` cannot stand alone after `previous`: it points back or is a fragment.
    A question with a subject of its own, or in another language than `previous` without a
    word pointing back, stands alone."""
    turn = _Turn.read(question)
    if turn.pointers():
        return True
    if not turn.own_words():
        return True  # "En hoeveel procent?", "Waarom?"
    if language(question) and language(previous) and language(question) != language(previous):
        return False
    return turn.is_fragment()


def _referent(previous_turn: _Turn, previous_answer: str) -> list[str]:
    """What "ze"/"they"/"zijn" stands for: the name the previous answer gave when the previous
    question asked who or which one, else the group that question named."""
    if previous_turn.asks_which_one():
        name = named_in_answer(previous_answer)
        if name:
            return name
    return previous_turn.group()


def _resolve(question: str, previous_turn: _Turn, previous_standalone: str, previous_answer: str = "") -> str:
    """The follow-up made to stand alone: pronouns for a group and "toen" replaced in place (the
    question keeps its own predicate); anything else read against the previous question."""
    turn = _Turn.read(question)
    pointers = turn.pointers()
    if pointers and all(kind in ("personal", "then") for _, kind in pointers):
        tokens = list(turn.tokens)
        years = previous_turn.years() or _Turn.read(previous_answer).years()
        for i, kind in pointers:
            source = _referent(previous_turn, previous_answer) if kind == "personal" else years
            if not source:
                break
            if kind == "personal":
                tokens[i] = " ".join(source)
            elif tokens[i].lower() == "sindsdien":
                tokens[i] = "sinds " + " ".join(source)
            else:
                tokens[i] = ("" if i and tokens[i - 1].lower() == "since" else "in ") + " ".join(source)
        else:
            resolved = _respell(turn.rest, turn.tokens, tokens)
            if len(turn.own_words()) >= 2:
                return resolved
            # A predicate of one word ("Waar lopen ze op vast?", "Waar zitten ze?") says too little to
            # find the answer by: the previous question's topic comes along.
            return f"{previous_standalone.rstrip(' ?')} — {resolved}"
    contrasted = _contrast(turn, previous_turn, previous_standalone)
    if contrasted:
        return contrasted
    rest = turn.rest.strip(" ?")
    return f"{previous_standalone.rstrip(' ?')} — {rest}?" if rest else previous_standalone


def _contrast(turn: _Turn, previous_turn: _Turn, previous_standalone: str) -> str | None:
    """The previous question about another year, name or group, when the fragment names one
    in contrast: "En in 2018?" after "... in 2021 ...?" asks the same for 2018, "En in
    Zuidhaven?" after "... in Veenmarke?" for Zuidhaven, and "En bij gemeenten?" after
    "Hoeveel procent van de samenwerkingsverbanden ervaart knelpunten?" asks "Hoeveel procent
    van de gemeenten ervaart knelpunten?". A group is only replaced after a preposition ("bij",
    "voor", "for": whose case), when the previous question named two plurals (its group and
    what it asked about) and did not count the group itself ("Hoeveel pilots zijn er?" - "En
    bij gemeenten?" stays a question about pilots); a bare noun ("En de oplossingen?") may
    stand in for either plural, so it is left to be read against the previous question (None)."""
    if not turn.is_fragment():
        return None
    named = list(turn.tokens)
    while named and named[0].lower() in CONTRAST_PREPOSITIONS:
        named = named[1:]
    if not named:
        return None
    years = previous_turn.years()
    if len(named) == 1 and _YEAR.fullmatch(named[0]):
        return _replaced(previous_standalone, years[0], named) if len(years) == 1 else None
    names = previous_turn.names()
    # A capital that only starts the question ("Gemeenten?") is no name; an acronym ("NRO?") is.
    sentence_start = named[0] is turn.tokens[0] and not named[0].isupper()
    if len(named) <= 3 and all(t[:1].isupper() for t in named) and not sentence_start:
        return _replaced(previous_standalone, names[0], named) if len(names) == 1 else None
    after_preposition = len(named) < len(turn.tokens)
    if (not after_preposition or len(named) > 4 or not _is_plural(named[-1], turn.lang)
            or any(_is_verb(t, turn.lang) for t in named[1:])):
        return None
    group = previous_turn.group()
    words = previous_turn.candidates()
    plurals = [w for w in words if _is_plural(w, previous_turn.lang)]
    if len(group) != 1 or group[0] not in plurals or len(plurals) < 2:
        return None
    low = [t.lower() for t in previous_turn.tokens]
    at = previous_turn.tokens.index(group[0])
    if at and (low[at - 1] == "hoeveel" or low[at - 2:at] == ["how", "many"]):
        return None  # what was counted, not whose count
    start = at
    while start and previous_turn.tokens[start - 1] in words:
        start -= 1  # the whole noun: "school partnerships"
    if low[start - 1:start] and low[start - 1] in DETERMINERS and named[0].lower() in DETERMINERS:
        named = named[1:]  # "van de samenwerkingsverbanden" - "bij de scholen": one article
    return _replaced(previous_standalone, " ".join(previous_turn.tokens[start:at + 1]), named)


def _replaced(text: str, old: str, new: list[str]) -> str | None:
    """`text` with its first `old` (a whole word or words) replaced by the words `new`; None without one."""
    found = re.search(rf"(?<!\w){re.escape(old)}(?!\w)", text)
    if not found:
        return None
    return text[:found.start()] + " ".join(new) + text[found.end():]


def _respell(text: str, old: list[str], new: list[str]) -> str:
    """`text` with its tokens replaced one by one (punctuation and spacing kept)."""
    out, pos = [], 0
    for before, after in zip(old, new):
        start = text.index(before, pos)
        out += [text[pos:start], after]
        pos = start + len(before)
    out.append(text[pos:])
    result = "".join(out).strip()
    return result[:1].upper() + result[1:]


def _previous(history: list[dict]) -> tuple[_Turn | None, str, str]:
    """The last user turn, its standalone form and the answer it got."""
    previous_turn: _Turn | None = None
    previous = ""
    answer = ""
    # Earlier questions are made to stand alone in turn, so a chain of follow-ups keeps its
    # subject; instructions to the assistant (refused) are no context for what follows.
    for message in history or []:
        if message.get("role") == "assistant" and previous_turn is not None:
            answer = message.get("content", "") or ""
        earlier = message.get("content", "") if message.get("role") == "user" else ""
        if earlier and not is_instruction(earlier):
            standalone = (_resolve(earlier, previous_turn, previous, answer)
                          if previous and needs_context(earlier, previous_turn.text) else earlier)
            answer = ""
            previous_turn, previous = _Turn.read(earlier), _Turn.read(standalone).plain() if standalone == earlier else standalone
            # A turn whose pronoun was resolved ("Hoe kan ik ze bellen?" -> "... Oberon ...") names its
            # group only in its standalone form; so does one without words of its own.
            if standalone != earlier and (not previous_turn.candidates()
                                          or any(kind == "personal" for _, kind in previous_turn.pointers())):
                previous_turn = _Turn.read(standalone)
    return previous_turn, previous, answer


def is_follow_up(question: str, history: list[dict]) -> bool:
    """True when the question needs the conversation to be understood (see `needs_context`)."""
    previous_turn, previous, _ = _previous(history)
    return bool(previous) and needs_context(question, previous_turn.text)


def condense_question(question: str, history: list[dict]) -> str:
    """Make a follow-up stand alone with the previous user turn's subject (deterministic rule).

    "Hoe tevreden zijn ze over de aansluiting?" after "Welke knelpunten ervaren gemeenten?"
    becomes "Hoe tevreden zijn gemeenten over de aansluiting?"; "En bij gemeenten?" after
    "Hoeveel samenwerkingsverbanden ervaren knelpunten?" becomes "Hoeveel
    samenwerkingsverbanden ervaren knelpunten — bij gemeenten?" (the answerer weighs the
    follow-up's own words above the carried-over ones). A question that names its own subject,
    or switches language without pointing back, is returned as is (less a chat opener such as "Oké, en").
    """
    previous_turn, previous, answer = _previous(history)
    if not previous:
        return question
    if not needs_context(question, previous_turn.text):
        return _Turn.read(question).plain()  # "Oké, en waar liggen de oplossingen?" -> "Waar liggen de oplossingen?"
    return _resolve(question, previous_turn, previous, answer)
