"""PDF bytes -> clean page texts (pypdfium2), and text cleaning shared with other formats.

Per page: the physical page number, the printed page label, and Markdown-ish text with
page furniture removed: running headers/footers, contents pages (dot leaders), line-end
hyphenation, wrapped list items. Outline entries become `#` heading lines at the place
on the page where their destination points, so text above a bookmark keeps the
previous heading.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from .chunking import BULLETS

log = logging.getLogger(__name__)

# Bump when extraction or cleaning changes the text, so stored hashes no longer match.
PDF_TEXT_VERSION = "pdfium-clean-v3-tables"

_ITEM = re.compile(rf"^\s*(?:[{re.escape(BULLETS)}]\s+|\(?(?:\d{{1,3}}|[a-z])[.)]\s+)")
# Words after which "x- " is an ellipsis compound ("onderwijs- en jeugdhulp"), never joined.
_ELLIPSIS_NEXT = {"en", "of", "tot", "noch", "als", "dan", "and", "or", "to", "t/m"}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_HYPHENATED_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)+", re.UNICODE)
# A line-end hyphen: "-" at the end of a line (pdfium marks the ones it recognises with U+FFFE
# and drops the line break), followed by the next word.
_LINE_END_HYPHEN = re.compile(r"(\w+)(?:-[ \t]*\r?\n[ \t]*|[\ufffe\x02][ \t]*(?:\r?\n[ \t]*)?)([^\W\d_][\w]*)", re.UNICODE)
_TEXT_LINE_END_HYPHEN = re.compile(r"([^\W\d_]+)-[ \t]*\r?\n[ \t]*([^\W\d_]+)", re.UNICODE)
_DOT_LEADER = re.compile(r"(?:\.\s?){4,}\s*[\divxlcdmIVXLCDM]+\s*$|\s\.{2,}\s*\d+\s*$")
# On a contents page, entries without leaders: "9 Kloksynchronisatie 68".
_TOC_ENTRY = re.compile(r"^(?:\d+(?:\.\d+)*|[A-Z])\.?\s+\S.*\s(?:\d+|[ivxlc]+)$")
_CONTENTS_TITLE = re.compile(r"^(inhoud(sopgave|stafel)?|contents|table of contents)$", re.IGNORECASE)
_NUMBERED_HEADING = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(\S.{1,80})$")
_DIGITS = re.compile(r"\d+")
_ROMAN = re.compile(r"^[ivxlcdm]+$", re.IGNORECASE)


class PdfError(Exception):
    """The PDF cannot be read; the message says why (English, one line)."""


@dataclass
class PageText:
    """One page's cleaned text with its physical number and printed label."""

    number: int
    label: str
    text: str
    ocr: bool = False  # the text was recognised from a scan


@dataclass
class PdfContent:
    """What a PDF yields: document metadata (title, year) and its pages; `notes` name pages
    that could not be read (no text recognised, or OCR not installed)."""

    meta: dict
    pages: list[PageText]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Line:
    text: str
    left: float | None = None
    top: float | None = None
    size: float = 0.0
    heading: int = 0  # outline level + 1 when this line is a heading
    table: object | None = None  # a rag.tables.Table standing in this line's place


@dataclass
class _Page:
    number: int
    label: str
    lines: list[_Line] = field(default_factory=list)
    ocr: bool = False


# -- extraction -------------------------------------------------------------------------


def _page_lines(textpage, raw) -> list[_Line]:
    """Lines of a text page with the position and font size of their first character."""
    text = textpage.get_text_range()
    exact = textpage.count_chars() == len(text)  # char boxes index the same string
    lines: list[_Line] = []
    start = 0
    for piece in re.split(r"(\r\n|\n|\r)", text):
        if piece in ("\r\n", "\n", "\r"):
            start += len(piece)
            continue
        line = _Line(piece)
        stripped = len(piece) - len(piece.lstrip())
        if exact and piece.strip():
            try:
                left, _bottom, _right, top = textpage.get_charbox(start + stripped)
                line.left, line.top = left, top
                line.size = float(raw.FPDFText_GetFontSize(textpage, start + stripped))
            except Exception:  # noqa: BLE001 - geometry is a bonus, never a reason to fail
                pass
        lines.append(line)
        start += len(piece)
    return [ln for ln in lines if ln.text.strip()]


def _outline(pdf) -> dict[int, list[tuple[int, str, float | None]]]:
    """0-based page index -> [(level, title, y of the destination or None)] in outline order."""
    marks: dict[int, list[tuple[int, str, float | None]]] = {}
    try:
        for item in pdf.get_toc(max_depth=8):
            title = " ".join((item.get_title() or "").split())
            dest = item.get_dest()
            if not title or dest is None:
                continue
            index = dest.get_index()
            if index is None or index < 0:
                continue
            y = None
            try:
                _mode, pos = dest.get_view()
                if len(pos) >= 2 and pos[1]:
                    y = float(pos[1])
            except Exception:  # noqa: BLE001 - views without a position are common
                pass
            marks.setdefault(index, []).append((item.level, title, y))
    except Exception:  # noqa: BLE001 - a broken outline must not stop the text
        log.debug("ignoring a broken PDF outline", exc_info=True)
    return marks


def _pdf_date_year(value: str) -> int | None:
    m = re.match(r"^(?:D:)?((?:19|20)\d\d)", (value or "").strip())
    return int(m.group(1)) if m else None


def extract_pdf(data: bytes, on_page: Callable[[int, int], None] | None = None) -> PdfContent:
    """Read a PDF's pages with pypdfium2 and clean them; raise PdfError when it cannot be read.

    `on_page(done, total)` is called after every page is read."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    from .ocr import PageReader
    from .tables import PdfTableFinder, merge_continued

    reader = PageReader()
    finder = PdfTableFinder(data)
    tables: list[list] = []
    heights: list[float] = []
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message or "security" in message:
            raise PdfError("encrypted PDF (password required)") from exc
        raise PdfError(f"corrupt or unreadable PDF ({message.split(':')[0].strip() or 'PdfiumError'})") from exc
    try:
        info = {}
        try:
            info = pdf.get_metadata_dict(skip_empty=True)
        except Exception:  # noqa: BLE001
            pass
        total = len(pdf)
        pages: list[_Page] = []
        for index in range(total):
            try:
                label = pdf.get_page_label(index).strip()
            except Exception:  # noqa: BLE001
                label = ""
            page = _Page(index + 1, label or str(index + 1))
            try:
                pdf_page = pdf[index]
                textpage = pdf_page.get_textpage()
                page.lines = _page_lines(textpage, raw)
                textpage.close()
                recognised = reader.lines(page.number, pdf_page, "\n".join(ln.text for ln in page.lines))
                if recognised is not None:
                    page.lines, page.ocr = [_Line(text) for text in recognised], True
                heights.append(float(pdf_page.get_height()))
                found = [] if page.ocr else finder.find(index, pdf_page, page.lines)
                tables.append(_place_tables(page, found, heights[-1]))
                pdf_page.close()
            except pdfium.PdfiumError:
                log.debug("page %d has no readable text", index + 1)
            if len(tables) < len(pages) + 1:
                tables.append([])
                heights.append(0.0)
            pages.append(page)
            if on_page:
                on_page(index + 1, total)
        outline = _outline(pdf)
    finally:
        pdf.close()
        finder.close()
    merge_continued(tables, heights)
    for page in pages:
        page.lines = [ln for ln in page.lines if ln.table is None or "merged_into" not in ln.table.extra]
    return PdfContent(_document_meta(info, pages), clean_pages(pages, outline), _ocr_notes(reader))


def _place_tables(page: _Page, tables: list, height: float) -> list:
    """Put each table in place of the page lines it covers (and of its caption line above it).
    Returns the tables placed; lines without a position leave the page as it is."""
    from .tables import is_caption

    if not tables or any(ln.top is None for ln in page.lines):
        return []
    placed = []
    for table in tables:
        inside = [i for i, ln in enumerate(page.lines)
                  if ln.table is None and table.top - 2 <= height - ln.top <= table.bottom - 1]
        if not inside:
            continue
        first = inside[0]
        above = first - 1
        if (not table.caption and above >= 0 and page.lines[above].table is None
                and table.top - (height - page.lines[above].top) < 30 and is_caption(page.lines[above].text)
                and not _continues(page.lines[above - 1] if above > 0 else None, page.lines[above])):
            table.caption = " ".join(page.lines[above].text.split())
            inside.insert(0, above)
            first = above
        marker = _Line("", page.lines[first].left, page.lines[first].top, page.lines[first].size, table=table)
        gone = set(inside)
        page.lines = [marker if i == first else ln for i, ln in enumerate(page.lines) if i == first or i not in gone]
        placed.append(table)
    return placed


def _continues(before: _Line | None, line: _Line) -> bool:
    """Is `line` the wrapped end of the paragraph line above it (no caption of its own)? It is
    when that line runs on without a sentence end and stands one line spacing above."""
    if before is None or before.table is not None or before.top is None or line.top is None:
        return False
    text = before.text.rstrip()
    spacing = before.top - line.top
    return bool(text) and not text.endswith((".", ":", ";", "!", "?")) and 0 < spacing <= 1.6 * max(line.size, 1.0)


def _ocr_notes(reader) -> list[str]:
    from .ocr import page_list

    notes = []
    if reader.unreadable:
        notes.append(f"{page_list(reader.unreadable)}: no text recognised in the scan")
    if reader.skipped:
        notes.append(f"{page_list(reader.skipped)}: scanned, not read because {reader.missing}")
    return notes


def _document_meta(info: dict, pages: list[_Page]) -> dict:
    """Title and year: the PDF's metadata, else the first page with text; a year in the title wins."""
    meta: dict = {}
    title = " ".join(str(info.get("Title") or "").split())
    if title and not re.match(r"^(microsoft (word|powerpoint)|untitled|document\d*$)", title, re.IGNORECASE):
        meta["title"] = title
    year = _pdf_date_year(str(info.get("CreationDate") or ""))
    first = next((p for p in pages if any(_WORD.search(ln.text) for ln in p.lines)), None)
    if first is not None:
        if "title" not in meta:
            lines = [ln for ln in first.lines if _WORD.search(ln.text)]
            biggest = max((ln.size for ln in lines), default=0.0)
            chosen = [ln for ln in lines if biggest and ln.size >= biggest - 0.5][:2] or lines[:1]
            candidate = " ".join(" ".join(ln.text.split()) for ln in chosen)[:200]
            if candidate:
                meta["title"] = candidate
        if year is None:
            m = re.search(r"\b((?:19|20)\d\d)\b", "\n".join(ln.text for ln in first.lines))
            year = int(m.group(1)) if m else None
    # A year in the title is the document's ("Aansluiting onderwijs en jeugdhulp 2021"); the
    # creation date is often when a copy was exported.
    in_title = re.findall(r"\b((?:19|20)\d\d)\b", meta.get("title", ""))
    if in_title:
        year = int(in_title[-1])
    if year is not None:
        meta["year"] = year
    return meta


# -- cleaning ---------------------------------------------------------------------------


def _furniture_key(text: str) -> str:
    key = _DIGITS.sub("#", " ".join(text.split()).casefold())
    # Front matter numbers its pages in roman numerals: "... Bookworm iv".
    return re.sub(r"(^|\s)[ivxlc]{1,6}$", r"\1#", key)


def _capitals(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters) >= 8 and sum(ch.isupper() for ch in letters) >= 0.8 * len(letters)


def _heading_prefix(text: str) -> str:
    """The first two words of a line, numbers and single letters normalised: "HOOFDSTUK 2.
    SYSTEEMVEREISTEN ..." and "BIJLAGE B. ..." -> "hoofdstuk #", "bijlage #"."""
    words = [w.rstrip(".:") for w in _furniture_key(text).split()[:2]]
    return " ".join("#" if len(w) <= 1 else w for w in words)


def _remove_furniture(pages: list[_Page]) -> int:
    """Drop running headers/footers: lines at the top or bottom of pages that recur on many
    pages once digits are normalised, running headers in capitals that name the current
    chapter and section ("HOOFDSTUK 2. SYSTEEMVEREISTEN 2.5. VEREISTEN ...": the same first
    words on many pages, the rest changing), and bare page numbers. Returns lines removed."""
    edge = 3
    counts: Counter[str] = Counter()
    prefixes: Counter[str] = Counter()
    for page in pages:
        keys = {_furniture_key(ln.text) for ln in page.lines[:edge] + page.lines[-edge:]}
        counts.update(keys)
        prefixes.update({_heading_prefix(ln.text) for ln in page.lines[:edge] + page.lines[-edge:]
                         if _capitals(ln.text)})
    threshold = max(3, int(0.2 * len(pages)))
    removed = 0
    for page in pages:
        n = len(page.lines)
        marks = {page.label.casefold(), str(page.number)}

        def furniture(line: _Line) -> bool:
            if line.table is not None:
                return False
            text = " ".join(line.text.split())
            key = _furniture_key(text)
            if text.casefold() in marks or _ROMAN.match(text) and text.casefold() == page.label.casefold():
                return True
            if key == "#" and counts[key] >= 2:
                return True
            if counts[key] >= threshold and counts[key] >= 3:
                return True
            if _capitals(text) and prefixes[_heading_prefix(text)] >= threshold:
                return True
            # A recurring line with this page's number in it is a running header ("Inleiding 9").
            tokens = set(re.findall(r"[\w]+", text.casefold()))
            return counts[key] >= 3 and bool(tokens & marks)

        keep: list[_Line] = []
        for i, line in enumerate(page.lines):
            if (i < edge or i >= n - edge) and furniture(line):
                # only strip from the edges inwards: a matching line in mid-page is text
                if i < edge and all(furniture(x) for x in page.lines[:i]) or i >= n - edge and all(
                    furniture(x) for x in page.lines[i + 1 :]
                ):
                    removed += 1
                    continue
            keep.append(line)
        page.lines = keep
    return removed


def _remove_contents(page: _Page) -> bool:
    """Strip a contents page's entries (dot-leader lines and their wrapped titles)."""
    lines = page.lines
    leaders = [bool(_DOT_LEADER.search(ln.text)) for ln in lines]
    if sum(leaders) < 3 or sum(leaders) < 0.3 * len(lines):
        return False
    keep: list[_Line] = []
    for i, line in enumerate(lines):
        text = " ".join(line.text.split())
        if leaders[i] or _CONTENTS_TITLE.match(text) or _TOC_ENTRY.match(text):
            continue
        # A long entry wraps: its first part has no leader, the next line does.
        if i + 1 < len(lines) and leaders[i + 1] and not line.text.rstrip().endswith((".", ":")):
            continue
        keep.append(line)
    page.lines = keep
    return True


def _norm_title(text: str) -> str:
    text = re.sub(r"^(?:(?:\d+|[A-Z])(?:\.\d+)*\.?|chapter \d+\.?|hoofdstuk \d+\.?)\s+", "", text.strip(), flags=re.IGNORECASE)
    return re.sub(r"\W+", "", text.casefold())


def _place_headings(page: _Page, marks: list[tuple[int, str, float | None]]) -> None:
    """Insert outline headings where their destination points on the page."""
    lines = page.lines
    used: set[int] = set()
    placed: list[tuple[float, int, str]] = []  # (position, level, title); position = line index (+0.5 = before)
    for level, title, y in marks:
        wanted = _norm_title(title)
        best: tuple[float, int, int] | None = None  # (distance, index, span)
        for i, line in enumerate(lines):
            if i in used:
                continue
            for span in (1, 2, 3):
                if i + span > len(lines):
                    break
                joined = _norm_title(" ".join(ln.text for ln in lines[i : i + span]))
                if joined == wanted and wanted:
                    top = line.top
                    distance = abs(top - y) if (y is not None and top is not None) else float(i)
                    if best is None or distance < best[0]:
                        best = (distance, i, span)
                    break
                if not wanted.startswith(joined) or not joined:
                    break
        if best is not None and (y is None or best[0] < 120):
            _, i, span = best
            used.update(range(i, i + span))
            placed.append((i, level, title))
            continue
        # No line carries the title: put the heading before the first line below the destination.
        position = 0.0
        if y is not None:
            position = float(len(lines))
            for i, line in enumerate(lines):
                if line.top is not None and line.top <= y + 2:
                    position = i - 0.5
                    break
        else:
            position = -0.5
        placed.append((position, level, title))
    if not placed:
        return
    out: list[_Line] = []
    by_line = {int(p): (lvl, t) for p, lvl, t in placed if p == int(p)}
    before: dict[int, list[tuple[int, str]]] = {}
    for p, lvl, t in placed:
        if p != int(p):
            before.setdefault(int(p + 0.5), []).append((lvl, t))
    for i in range(len(lines) + 1):
        for lvl, t in before.get(i, []):
            out.append(_Line(t, heading=lvl + 1))
        if i == len(lines):
            break
        if i in by_line:
            lvl, t = by_line[i]
            out.append(_Line(t, heading=lvl + 1))
        elif i not in used:
            out.append(lines[i])
    page.lines = out


def _detect_numbered_headings(page: _Page, body_size: float) -> None:
    """Without an outline: short lines like "3.1.2 Hoofdserver" are headings."""
    for line in page.lines:
        if line.heading:
            continue
        m = _NUMBERED_HEADING.match(" ".join(line.text.split()))
        if not m:
            continue
        number, title = m.groups()
        plain = "." not in number
        if not title[0].isupper() or title.rstrip().endswith((".", ",", ";", ":")) or len(title.split()) > 12:
            continue
        if sum(ch.isdigit() for ch in title) > 2 or "  " in line.text.strip():
            continue
        # "1 Inleiding" is a heading only in a larger font; "3.1 Aanpak" on its own.
        if plain and not (line.size and body_size and line.size > body_size + 0.5):
            continue
        line.heading = number.count(".") + 1
        line.text = f"{number} {title}"


def _rejoin_lists(lines: list[_Line]) -> list[_Line]:
    """Join wrapped list-item lines back onto their item."""
    out: list[_Line] = []
    item: _Line | None = None
    for line in lines:
        text = line.text.strip()
        if line.heading or line.table is not None:
            item = None
            out.append(line)
            continue
        if _ITEM.match(text):
            item = _Line(text, line.left, line.top, line.size)
            out.append(item)
            continue
        if item is not None:
            indented = line.left is not None and item.left is not None and line.left > item.left + 1.5
            unfinished = not item.text.endswith((".", "!", "?", ":", ";")) and text[:1].islower()
            if indented or unfinished:
                item.text = _join_lines(item.text, text)
                continue
        item = None
        out.append(line)
    return out


def _join_lines(a: str, b: str) -> str:
    if a.endswith(("-", "\ufffe", "\x02")):
        return f"{a}\n{b}"  # leave line-end hyphens to dehyphenate()
    return f"{a} {b}"


def _vocabulary(text: str) -> tuple[set[str], set[str]]:
    words = {w.casefold() for w in _WORD.findall(text)}
    hyphenated = {w.casefold() for w in _HYPHENATED_WORD.findall(text)}
    return words, hyphenated


def dehyphenate(text: str, vocabulary: tuple[set[str], set[str]] | None = None, layout: bool = True) -> str:
    """Join line-end hyphenation ("com-\\nputer" -> "computer").

    With `layout` (PDF text), a hyphen at a line end is split-word hyphenation unless the
    document itself writes the hyphenated form, the second part is capitalised or the
    first part ends in a digit/capital ("LTSP-server"). Without it (text formats), words are
    joined only when the joined form occurs elsewhere in the document. Ellipsis compounds
    ("onderwijs- en jeugdhulp") are never joined."""
    words, hyphenated = vocabulary or _vocabulary(text)
    pattern = _LINE_END_HYPHEN if layout else _TEXT_LINE_END_HYPHEN

    def fix(m: re.Match) -> str:
        a, b = m.group(1), m.group(2)
        if b.casefold() in _ELLIPSIS_NEXT:
            return f"{a}- {b}"
        if (a + b).casefold() in words:
            return a + b
        if not layout:
            return m.group(0)
        if f"{a}-{b}".casefold() in hyphenated or b[:1].isupper() or a[-1:].isdigit() or a[-1:].isupper():
            return f"{a}-{b}"
        return a + b

    return pattern.sub(fix, text)


# Typographic ligatures to their letters: Dutch "ĳ" above all ("Bĳlage" must match "bijlage").
LIGATURES = str.maketrans({"ĳ": "ij", "Ĳ": "IJ", "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl",
                           "ﬅ": "st", "ﬆ": "st"})


def clean_text(text: str) -> str:
    """Cleaning for text formats: ligatures to letters, and line-end hyphenation the document
    itself confirms joined."""
    text = text.translate(LIGATURES)
    if "-" not in text:
        return text
    return dehyphenate(text, layout=False)


def ocr_page_texts(texts: list[str]) -> list[tuple[int, str]]:
    """Recognised page texts (of an image file) cleaned like PDF pages: (page number, text)."""
    pages = [_Page(i + 1, str(i + 1), [_Line(t) for t in text.splitlines() if t.strip()], True)
             for i, text in enumerate(texts)]
    return [(p.number, p.text) for p in clean_pages(pages, {}) if p.text.strip()]


def clean_pages(pages: list[_Page], outline: dict[int, list[tuple[int, str, float | None]]]) -> list[PageText]:
    """Turn raw page lines into clean Markdown-ish page texts."""
    _remove_furniture(pages)
    for page in pages:
        _remove_contents(page)
    sizes = Counter(round(ln.size) for p in pages for ln in p.lines if ln.size)
    body_size = float(sizes.most_common(1)[0][0]) if sizes else 0.0
    for index, page in enumerate(pages):
        if index in outline:
            _place_headings(page, outline[index])
        if not outline:
            _detect_numbered_headings(page, body_size)
    texts: list[str] = []
    for page in pages:
        rendered: list[str] = []
        for line in _rejoin_lists(page.lines):
            text = line.text.translate(LIGATURES)
            if line.table is not None:
                from .tables import to_markdown

                rendered.append(to_markdown(line.table).translate(LIGATURES))
            elif line.heading:
                rendered.append(f"{'#' * min(line.heading, 6)} {' '.join(text.split())}")
            elif text.lstrip().startswith("#"):
                # A shell prompt or config comment ("# dpkg-reconfigure ...") is not a heading:
                # headings come from the outline or the numbering.
                rendered.append("\\" + text.strip())
            else:
                rendered.append(text.strip())
        texts.append("\n".join(rendered).strip("\n"))
    vocabulary = _vocabulary("\n".join(texts))
    result: list[PageText] = []
    for page, text in zip(pages, texts):
        text = dehyphenate(text, vocabulary, layout=True)
        text = text.replace("\ufffe", "-").replace("\x02", "-")
        result.append(PageText(page.number, page.label, text, page.ocr))
    return result
