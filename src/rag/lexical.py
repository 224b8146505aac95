"""Dutch-aware tokens and the BM25 (bm25s) index over chunk texts."""

from __future__ import annotations

import bisect
import json
import logging
import math
import re
import shutil
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np

DUTCH_STOPWORDS = frozenset(
    """
    de het een en of maar want dus dat die dit deze der des den van voor naar met
    zonder over onder tussen door bij tot om op in uit aan te ter ten als dan zo
    ook nog al wel niet geen is zijn was waren wordt worden werd werden word ben
    bent heb hebt heeft hebben had hadden kan kun kunnen kon konden zal zul zullen
    zou zouden moet moeten mag mogen wil willen er hier daar waar wat welke welk
    wie hoe hoeveel waarom wanneer ik je jij u hij zij ze we wij jullie hun hen
    mij me mijn jouw uw zijn haar ons onze hem men iets niets alle alles veel meer
    meest wat zich zelf dan toen nu al wel eens even heel zeer erg vooral volgens
    sinds eerder echt elk elke ieder iedere mee zoals inmiddels alleen allen toch
    tegen nooit altijd vaak soms steeds gewoon zelfs verder daarbij daarvan
    gaan gaat ging gegaan doen doet deed gedaan maken maakt maakte gemaakt komen
    komt kwam gekomen krijgen krijgt kreeg gekregen zien ziet zag gezien kijken
    kijkt vinden vindt vond gevonden staan staat stond gestaan zeggen zegt zei
    gezegd horen hoort hoorde spelen speelt lopen loopt liggen ligt houden houdt
    the a an and or of to in on for is are was were what which who how many much
    does do did with by at from about as be this that these those it its
    """.split()
)

_TOKEN = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)?")


def fold_accents(text: str) -> str:
    """Lowercase and strip diacritics: 'Financiële' -> 'financiele'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    # The newer "dutch" Snowball stemmer strips the ge- prefix ("gemeenten" -> "meen"),
    # colliding with unrelated words; the classic Porter variant keeps "gemeent".
    return Stemmer.Stemmer("dutch_porter")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Stem one folded word; also fold the Dutch -s plural ("gemeentes" = "gemeenten")."""
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "is", "us")):
        word = word[:-1]
    return _stemmer().stemWord(word)


def words(text: str) -> list[str]:
    """Folded word tokens (numbers kept, '91%' -> '91')."""
    return _TOKEN.findall(fold_accents(text))


def tokenize(text: str, keep_stopwords: bool = False) -> list[str]:
    """BM25 tokens: folded, stopwords removed, stemmed; hyphenated parts also split."""
    tokens: list[str] = []
    for word in words(text.replace("-", " - ")):
        if not keep_stopwords and word in DUTCH_STOPWORDS:
            continue
        tokens.append(stem(word) if not word[0].isdigit() else word)
    return tokens


_DOUBLE_VOWEL = re.compile(r"([aeou])\1")


def similar_tokens(a: str, b: str) -> bool:
    """Equal, or one an inflection of the other that the stemmer left apart ("ervaart"/"ervar"):
    after folding double vowels, the shorter (>= 4 letters) starts the longer and covers
    at least 70% of it."""
    if a == b:
        return True
    a, b = _DOUBLE_VOWEL.sub(r"\1", a), _DOUBLE_VOWEL.sub(r"\1", b)
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) >= 4 and long_.startswith(short) and len(short) >= 0.7 * len(long_):
        return True
    return _linked_compound(short, long_)


# Dutch links the parts of a compound with -s-, -e-, -n- or -en- ("leerling(en)vervoer",
# "onderwijs(zorg)"), and writers differ on which: the same compound either way.
_LINKS = ("s", "e", "n", "en")


def _linked_compound(short: str, long_: str) -> bool:
    """`long_` is `short` with a linking morpheme between two parts of at least 4 letters each."""
    extra = len(long_) - len(short)
    if extra not in (1, 2) or len(short) < 8 or short[:4] != long_[:4] or short[-4:] != long_[-4:]:
        return False
    return any(long_.startswith(short[:cut]) and long_.endswith(short[cut:]) and long_[cut:cut + extra] in _LINKS
               for cut in range(4, len(short) - 3))


def content_words(text: str) -> list[str]:
    """Distinct content tokens of a text, in order (for overlap measures)."""
    seen: dict[str, None] = {}
    for token in tokenize(text):
        if len(token) > 1:
            seen.setdefault(token, None)
    return list(seen)


def _bm25s():
    """bm25s, with its logger back under the root's level (it sets itself to DEBUG on import)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


class LexicalIndex:
    """BM25 over chunk texts with their ids; `generation` is the store key it was built for."""

    def __init__(self, retriever, ids: list[str], generation: int | str):
        self._retriever = retriever
        self.ids = ids
        self.generation = generation
        self._lock = threading.Lock()
        vocab = getattr(retriever, "vocab_dict", None) or {}
        self.vocabulary = frozenset(w for w in vocab if w)
        self._sorted_vocabulary = sorted(self.vocabulary)
        self._doc_freq: dict[str, int] = {}
        if retriever is not None:
            indptr = np.asarray(retriever.scores["indptr"])
            self._doc_freq = {w: int(indptr[i + 1] - indptr[i]) for w, i in vocab.items() if w}

    def idf(self, token: str) -> float:
        """Inverse document frequency over chunks; words the corpus lacks weigh most."""
        n = len(self.ids)
        return math.log((n + 1) / (self._doc_freq.get(token, 0) + 0.5))

    def knows(self, token: str) -> bool:
        """True when the corpus has this token, an inflection of it (see `similar_tokens`),
        or, for a compound, a known part of at least 5 letters ("netwerkvorm")."""
        if self._knows_word(token):
            return True
        if len(token) >= 9:
            for cut in range(5, len(token) - 3):
                head, tail = token[:cut], token[cut:]
                if head in self.vocabulary or (head.endswith("s") and head[:-1] in self.vocabulary):
                    return True
                if len(tail) >= 5 and tail in self.vocabulary:
                    return True
        return False

    def _knows_word(self, token: str) -> bool:
        if token in self.vocabulary:
            return True
        for length in range(4, len(token)):
            if token[:length] in self.vocabulary and similar_tokens(token[:length], token):
                return True
        lo = bisect.bisect_left(self._sorted_vocabulary, token)
        for other in self._sorted_vocabulary[lo : lo + 50]:
            if not other.startswith(token):
                break
            if similar_tokens(token, other):
                return True
        return False

    @classmethod
    def build(cls, ids: list[str], texts: list[str], generation: int | str) -> "LexicalIndex":
        """Index texts (already prefixed with their heading path)."""
        bm25s = _bm25s()

        retriever = bm25s.BM25(k1=1.2, b=0.75)
        corpus = [tokenize(t) for t in texts]
        if ids:
            retriever.index(corpus, show_progress=False)
        return cls(retriever if ids else None, list(ids), generation)

    def save(self, folder: Path) -> None:
        """Write atomically: build in a temp folder, then swap it in."""
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self._retriever is not None:
            self._retriever.save(str(tmp / "bm25"))
        (tmp / "ids.json").write_text(json.dumps({"generation": self.generation, "ids": self.ids}))
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> "LexicalIndex | None":
        """Load a saved index, or None when missing or unreadable."""
        bm25s = _bm25s()

        try:
            meta = json.loads((folder / "ids.json").read_text())
            retriever = bm25s.BM25.load(str(folder / "bm25")) if meta["ids"] else None
        except (OSError, ValueError, KeyError):
            return None
        return cls(retriever, meta["ids"], meta["generation"])

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """Top-n (chunk_id, bm25 score) with score > 0."""
        tokens = tokenize(query)
        if not tokens or self._retriever is None or not self.ids:
            return []
        n = min(n, len(self.ids))
        with self._lock:  # bm25s keeps per-call state in numba/numpy buffers
            docs, scores = self._retriever.retrieve([tokens], k=n, show_progress=False, n_threads=0)
        out = []
        for idx, score in zip(np.asarray(docs[0]).tolist(), np.asarray(scores[0]).tolist()):
            if score > 0:
                out.append((self.ids[idx], float(score)))
        return out
