"""Documents -> Chunks, structure-aware.

Text is split into units that are never cut: list items, table-ish lines, tables
(a Markdown pipe table with its caption, see `rag.tables`; each table is a chunk of its own)
and sentences. Units are packed into chunks within one section (heading path) and one
page, up to `chunk_size` characters. The heading path is stored and prefixed to the
text that is embedded and BM25-indexed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from langchain_core.documents import Document

from .lexical import DUTCH_STOPWORDS

PATH_SEPARATOR = " › "
# Bump when chunk boundaries or texts change, so `rag ingest` re-chunks existing indexes.
CHUNKER_VERSION = "structure-v10"
# Subsections up to this size are folded into their parent section's chunk.
SMALL_SECTION_CHARS = 200
# Longest unit (sentence or list item) before it is cut at whitespace.
MAX_UNIT_CHARS = 1000
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# Bullets a list item may start with (PDFs bring en dashes, asterisk operators, squares).
BULLETS = "-*+•–—∗·◦▪▫■□●○‣⁃✓✗"
_LIST_ITEM = re.compile(rf"^\s*(?:[{re.escape(BULLETS)}]|\d{{1,3}}[.)])\s+")
# A sentence ends at . ! ? (optionally followed by a closing quote/bracket) before
# whitespace and an uppercase letter, digit or opening quote. Abbreviations like
# "o.a." or "St." are not followed by an uppercase start often enough to matter here.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]?\s+(?=[A-Z0-9ÀÁÂÄÈÉÊËÍÎÏÓÔÖÚÛÜ“\"'(])")
# Titles written as an abbreviation ("Drs.", "dhr."), before a name.
_TITLE_ABBREVIATIONS = r"dhr|mevr|mw|drs|dr|prof|ir|ing|mr|mrs|ms"
# Abbreviations that end in a full stop without ending the sentence, in any case ("Drs.", "dr.").
_ABBREVIATION_END = re.compile(
    rf"(?:^|[\s(])(?i:st|o\.a|bijv|ca|nr|e\.d|z\.g|{_TITLE_ABBREVIATIONS}|i\.p\.v|t\.a\.v|m\.b\.t|resp|incl|excl|zgn)\.$"
)


@dataclass
class Chunk:
    """One retrievable passage with its provenance."""

    chunk_id: str
    doc_id: str
    text: str
    section: str
    page: int | None
    ordinal: int
    metadata: dict = field(default_factory=dict)
    page_label: str | None = None

    @property
    def embed_text(self) -> str:
        """What is embedded and BM25-indexed: heading path, then the text."""
        return f"{self.section}\n{self.text}" if self.section else self.text


@dataclass
class _Unit:
    text: str
    section: str
    page: int | None
    page_label: str | None = None
    table: bool = False


# An initial in a list of names ("J. de Vries en M. Bakker", "Jansen, P. Bakker"), after a title
# ("wethouder M. Brouwer") or several together ("R.J. Hoekstra") is no sentence end; a single
# letter after other words ("Tekst van bijlage A.") is.
_INITIAL_END = re.compile(
    r"(?:(?:^|\ben|\bdoor|\bby|\band|,|\b[A-Z]\.|\b(?i:wethouder|burgemeester|mevrouw|meneer|heer|directeur"
    r"|voorzitter|contactpersoon|minister|staatssecretaris|gedeputeerde|professor|mr|mrs|ms)"
    rf"|\b(?i:{_TITLE_ABBREVIATIONS})\.)\s+[A-Z]\.|(?:^|\s)(?:[A-Z]\.){{2,}})$"
)
# After a copula or these prepositions a single initial starts a name when a name follows
# ("De auteurs zijn M. Bomhof", "met P. Bakker"), not a word that starts sentences ("Nog").
_INITIAL_AFTER_WORD = re.compile(r"\b(?:zijn|is|was|waren|heet|met|aan|bij|namens|volgens|with|from)\s+[A-Z]\.$")


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph into sentences without breaking common abbreviations."""
    parts = _SENTENCE_END.split(paragraph.strip())
    sentences: list[str] = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if sentences and continues_sentence(sentences[-1], part):
            sentences[-1] = f"{sentences[-1]} {part}"
        else:
            sentences.append(part)
    return sentences


def continues_sentence(previous: str, part: str) -> bool:
    """`part` goes on the sentence `previous`: that ends in an abbreviation or an initial."""
    # Only the end matters; a sentence grown from thousands of initials is not searched whole
    # each time (the "x" keeps a cut word from starting a match).
    end = previous if len(previous) <= 80 else "x" + previous[-80:]
    if _ABBREVIATION_END.search(end) or _INITIAL_END.search(end):
        return True
    first = part.split()[0].strip("\"'“”‘’(").lower()
    return bool(_INITIAL_AFTER_WORD.search(end)) and first not in DUTCH_STOPWORDS


def _split_long(text: str, limit: int = MAX_UNIT_CHARS) -> list[str]:
    """A "sentence" longer than `limit` (a table row, a text without full stops) is cut at
    whitespace so no chunk grows without bound."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        cut = cut if cut > limit // 2 else limit
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        pieces.append(text)
    return pieces


def _clean_inline(text: str) -> str:
    """Collapse whitespace; drop Markdown emphasis markers that wrap a whole line."""
    text = " ".join(text.split())
    m = re.fullmatch(r"([*_]{1,2})(.+?)\1", text)
    return m.group(2).strip() if m else text


def is_bare_list(lines: list[str]) -> bool:
    """Three or more short lines that each stand alone: no sentence end or colon anywhere, and no
    line ending in a function word, comma or hyphen that would carry it on to the next (a
    factsheet's outcomes, one per line without bullets; wrapped prose or chart labels are not)."""
    from .lexical import DUTCH_STOPWORDS

    if len(lines) < 3:
        return False
    for line in lines:
        words = re.findall(r"[^\W\d_]+", line)
        last = line.rstrip().split()[-1].casefold() if line.strip() else ""
        if (len(line) > 50 or len(words) < 2 or line.rstrip().endswith((".", "!", "?", ":", ";", ",", "-", "("))
                or last in DUTCH_STOPWORDS):
            return False
    return True


def iter_units(
    text: str, root: str, page: int | None, state: list[tuple[int, str]] | None = None, page_label: str | None = None
):
    """Yield units (list item / sentence) with their heading path.

    `state` carries the heading path from one page to the next (updated in place).
    """
    path: list[tuple[int, str]] = state if state is not None else []
    paragraph: list[str] = []

    def section() -> str:
        parts = [root] if root else []
        for _, heading in path:
            if not parts or heading.casefold() != parts[-1].casefold():
                parts.append(heading)
        return PATH_SEPARATOR.join(parts)

    def flush():
        intro = paragraph[:1] if paragraph and paragraph[0].rstrip().endswith(":") else []
        if is_bare_list(paragraph[len(intro):]):  # with the line that introduces it, if any
            for line in intro:
                yield _Unit(_clean_inline(line), section(), page, page_label)
            for line in paragraph[len(intro):]:
                yield _Unit(f"- {_clean_inline(line)}", section(), page, page_label)
            paragraph.clear()
        if paragraph:
            joined = _clean_inline(" ".join(paragraph))
            paragraph.clear()
            for sentence in split_sentences(joined):
                for piece in _split_long(sentence):
                    yield _Unit(piece, section(), page, page_label)

    from .tables import is_caption, is_table_start, read_markdown_table, unit_texts

    raw_lines = text.splitlines()
    index = 0
    while index < len(raw_lines):
        raw = raw_lines[index]
        index += 1
        if is_table_start(raw_lines, index - 1):
            # The line right above the table (no blank line between) is its caption.
            caption = paragraph.pop() if paragraph and is_caption(paragraph[-1]) and index >= 2 and raw_lines[index - 2].strip() else ""
            yield from flush()
            table, index = read_markdown_table(raw_lines, index - 1)
            table.caption = caption
            for piece in unit_texts(table):
                yield _Unit(piece, section(), page, page_label, table=True)
            continue
        line = raw.rstrip()
        if line.lstrip().startswith("\\#"):  # an escaped "#" (Markdown): body text, not a heading
            line = line.replace("\\#", "#", 1)
            heading = None
        else:
            heading = _HEADING.match(line.strip())
        if heading:
            yield from flush()
            level = len(heading.group(1))
            title = _clean_inline(heading.group(2))
            path[:] = [(lvl, h) for lvl, h in path if lvl < level] + [(level, title)]
            continue
        if not line.strip():
            yield from flush()
            continue
        if _LIST_ITEM.match(line):
            yield from flush()
            for piece in _split_long(_clean_inline(line.strip())):
                yield _Unit(piece, section(), page, page_label)
            continue
        if raw.endswith("  ") or len(line.strip()) < 40 and paragraph and not line.strip().endswith((".", ":")):
            # Markdown hard line break / short chart label lines: keep within the paragraph.
            paragraph.append(line.strip())
            continue
        paragraph.append(line.strip())
    yield from flush()


def _chunk_id(doc_id: str, section: str, text: str, seen: dict[str, int]) -> str:
    digest = hashlib.sha256(f"{doc_id}\x00{section}\x00{text}".encode()).hexdigest()[:20]
    seen[digest] = seen.get(digest, 0) + 1
    if seen[digest] > 1:  # identical passage twice in one document
        digest = hashlib.sha256(f"{digest}\x00{seen[digest]}".encode()).hexdigest()[:20]
    return f"{doc_id}:{digest}"


def chunk_documents(documents: list[Document], chunk_size: int = 700, chunk_overlap: int = 0, root_title: bool = True) -> list[Chunk]:
    """Split one file's Documents (pages in order) into Chunks."""
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    units: list[_Unit] = []
    state: list[tuple[int, str]] = []
    for doc in documents:
        root = short_title(doc.metadata.get("title", "")) if root_title else ""
        units.extend(iter_units(doc.page_content, root, doc.metadata.get("page"), state, doc.metadata.get("page_label")))
    if not documents:
        return chunks
    base_meta = {k: v for k, v in documents[0].metadata.items() if k not in ("page", "page_label")}
    doc_id = base_meta["doc_id"]

    section_sizes: dict[str, int] = {}
    for unit in units:
        section_sizes[unit.section] = section_sizes.get(unit.section, 0) + len(unit.text)

    current: list[_Unit] = []

    def emit():
        if not current:
            return
        text = "\n".join(u.text for u in current)
        section, page = current[0].section, current[0].page
        chunks.append(
            Chunk(
                chunk_id=_chunk_id(doc_id, section, text, seen),
                doc_id=doc_id,
                text=text,
                section=section,
                page=page,
                ordinal=len(chunks),
                metadata=dict(base_meta),
                page_label=current[0].page_label,
            )
        )

    for unit in units:
        if unit.table:  # a table is a chunk of its own
            emit()
            current = [unit]
            emit()
            current = []
            continue
        size = sum(len(u.text) + 1 for u in current)
        same_place = bool(current) and current[0].section == unit.section and current[0].page == unit.page
        # Small subsections (chart panels, short lists) join their parent's chunk with
        # their heading as a label, so numbers stay next to what they measure.
        label = ""
        if current and not same_place and current[0].page == unit.page:
            parent = current[0].section + PATH_SEPARATOR
            if unit.section.startswith(parent) and section_sizes[unit.section] <= SMALL_SECTION_CHARS:
                label = unit.section[len(parent):]
                if current[-1].section == unit.section:
                    label = ""
                same_place = True
        text = f"{label}: {unit.text}" if label else unit.text
        if current and (not same_place or size + len(text) > chunk_size):
            emit()
            overlap: list[_Unit] = []
            if same_place and chunk_overlap and not label:
                for prev in reversed(current):
                    if sum(len(u.text) for u in overlap) + len(prev.text) > chunk_overlap:
                        break
                    overlap.insert(0, prev)
            current = overlap
            text = unit.text
        current.append(_Unit(text, unit.section, unit.page, unit.page_label))
    emit()
    return chunks


def short_title(title: str) -> str:
    """A short root for heading paths: the part before a colon or parenthesis."""
    title = re.split(r"[:(]", title, maxsplit=1)[0].strip()
    return title[:80]
