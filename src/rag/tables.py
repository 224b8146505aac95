"""Tables kept as tables: detected in PDFs (pdfplumber), DOCX and HTML, passed to the chunker
as a Markdown pipe table with its caption on the line above, and turned there into one unit
whose answer lines name every cell by its column header:

    Tevredenheid (in procenten)
    (zeer) tevreden — Samenwerkingsverbanden: 27%, Gemeenten: 39%.

`table_blocks()` reads such row lines back into cells, so the passage view can show a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Bump when table detection or row lines change.
TABLES_VERSION = "tables-v4"
ROW_SEPARATOR = " — "
CELL_SEPARATOR = ", "
# A row line ends like a sentence: short lines without an end read as the items of a list (and
# are quoted whole, every row of the table), while a row is one statement about its label.
ROW_END = "."
_ABBREVIATION_END = re.compile(r"(?:^|[\s(])(?:\w\.){2,}$")
# A table unit longer than this is cut into parts of whole rows, each with the caption.
MAX_TABLE_CHARS = 1800
_NUMBER = re.compile(r"^[-+]?\d+(?:[.,]\d+)*$")
_PERCENT_UNIT = re.compile(r"\(\s*(?:in\s+)?(?:%|procent(?:en)?|percentage)\s*\)|\bin procenten\b", re.IGNORECASE)
_EURO_UNIT = re.compile(r"\(\s*(?:in\s+)?(?:€|euro'?s?|eur)\s*\)|\bin euro'?s?\b", re.IGNORECASE)
_CAPTION = re.compile(r"^(?:tabel|table|tab\.)\s*\d*", re.IGNORECASE)
_SEPARATOR_ROW = re.compile(r"^\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?$")


@dataclass
class Table:
    """A table's caption, header row and body rows (all cells as clean strings)."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    page: int | None = None
    top: float = 0.0  # where it starts on its page (pdfplumber's top-origin y)
    bottom: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def width(self) -> int:
        return len(self.header)


def clean_cell(value) -> str:
    """A cell's text on one line ('' for None)."""
    return " ".join(str(value or "").split())


def make_table(cells: list[list], caption: str = "") -> Table | None:
    """A Table from rows of cells (the first row is the header); None when it is no real table:
    fewer than two columns or two rows with content."""
    rows = [[clean_cell(c) for c in row] for row in cells if row and any(clean_cell(c) for c in row)]
    if len(rows) < 2:
        return None
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    # Columns that are empty in every row (ruling artefacts) are dropped.
    keep = [j for j in range(width) if any(r[j] for r in rows)]
    rows = [[r[j] for j in keep] for r in rows]
    if len(keep) < 2:
        return None
    return Table(rows[0], rows[1:], clean_cell(caption))


# -- Markdown (what loaders emit, what the chunker reads) ---------------------------------


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """The caption (if any) on the line above a Markdown pipe table; blank lines around it."""
    lines = [""]
    if table.caption:
        lines.append(table.caption)
    lines.append("| " + " | ".join(_escape(c) for c in table.header) + " |")
    lines.append("|" + "---|" * table.width)
    lines.extend("| " + " | ".join(_escape(c) for c in row) + " |" for row in table.rows)
    lines.append("")
    return "\n".join(lines)


def _split_pipe_row(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [clean_cell(c.replace("\\|", "|")) for c in re.split(r"(?<!\\)\|", body)]


def is_table_start(lines: list[str], i: int) -> bool:
    """Does a Markdown pipe table (header row, then a separator row) start at line i?"""
    return (
        i + 1 < len(lines)
        and lines[i].lstrip().startswith("|")
        and bool(_SEPARATOR_ROW.match(lines[i + 1].strip()))
        and len(_split_pipe_row(lines[i])) >= 2
    )


def read_markdown_table(lines: list[str], i: int) -> tuple[Table, int]:
    """The pipe table starting at line i and the index of the first line after it."""
    header = _split_pipe_row(lines[i])
    rows: list[list[str]] = []
    j = i + 2
    while j < len(lines) and lines[j].lstrip().startswith("|"):
        rows.append(_split_pipe_row(lines[j]))
        j += 1
    width = len(header)
    rows = [(r + [""] * width)[:width] for r in rows]
    return Table(header, rows), j


def is_caption(line: str) -> bool:
    """A line that names the table below it: "Tabel 3. ..." or a short title-like line."""
    text = line.strip()
    if not text or text.startswith(("|", "#", "-", "*")):
        return False
    return bool(_CAPTION.match(text)) or (len(text) <= 120 and not text.endswith((".", ":", ";", ",")))


# -- row lines ----------------------------------------------------------------------


def _units(table: Table) -> list[str]:
    """Per column, the unit bare numbers in it carry ('%', '€ ' or ''): from its header, else the caption."""
    default = "%" if _PERCENT_UNIT.search(table.caption) else "€ " if _EURO_UNIT.search(table.caption) else ""
    units = []
    for head in table.header:
        units.append("%" if _PERCENT_UNIT.search(head) else "€ " if _EURO_UNIT.search(head) else default)
    return units


def _with_unit(value: str, unit: str) -> str:
    if not unit or not _NUMBER.match(value):
        return value
    return f"{unit}{value}" if unit.startswith("€") else f"{value}{unit}"


def row_lines(table: Table) -> list[str]:
    """One line per body row: its label, then every filled cell named by its column header."""
    units = _units(table)
    label_head = table.header[0]
    lines: list[str] = []
    for row in table.rows:
        label = row[0]
        cells = []
        for head, value, unit in zip(table.header[1:], row[1:], units[1:]):
            if not value:
                continue
            value = _with_unit(value, unit)
            cells.append(f"{head}: {value}" if head else value)
        if label_head and label:
            label = f"{label_head}: {label}"
        if not cells:
            if label:
                lines.append(label)
            continue
        line = f"{label}{ROW_SEPARATOR}{CELL_SEPARATOR.join(cells)}" if label else CELL_SEPARATOR.join(cells)
        lines.append(line if line.endswith((".", "!", "?")) else line + ROW_END)
    return lines


def unit_texts(table: Table, limit: int = MAX_TABLE_CHARS) -> list[str]:
    """The table as chunk texts: caption, then its row lines; cut into parts of whole rows past `limit`."""
    rows = row_lines(table)
    head = [table.caption] if table.caption else []
    parts: list[list[str]] = [[]]
    for row in rows:
        if parts[-1] and sum(len(r) + 1 for r in head + parts[-1]) + len(row) > limit:
            parts.append([])
        parts[-1].append(row)
    texts = []
    for n, part in enumerate(parts):
        caption = head if n == 0 or not head else [f"{table.caption} (vervolg)"]
        texts.append("\n".join(caption + part))
    return [t for t in texts if t.strip()]


# -- reading row lines back (the passage view) ---------------------------------------------


def _cells(rest: str) -> list[tuple[str, str]] | None:
    pieces = rest.split(CELL_SEPARATOR)
    cells: list[tuple[str, str]] = []
    for piece in pieces:
        head, sep, value = piece.partition(": ")
        if sep and head and len(head) <= 80:
            cells.append((head, value))
        elif cells:  # a value with ", " in it
            cells[-1] = (cells[-1][0], cells[-1][1] + CELL_SEPARATOR + piece)
        else:
            return None
    return cells or None


def parse_row(line: str) -> tuple[str, list[tuple[str, str]]] | None:
    """A row line's label and (header, value) cells, or None when the line is no table row."""
    label, sep, rest = line.partition(ROW_SEPARATOR)
    if rest.endswith(ROW_END) and not _ABBREVIATION_END.search(rest):
        rest = rest[: -len(ROW_END)]
    if not sep:
        return None
    cells = _cells(rest)
    return (label.strip(), cells) if cells else None


def table_blocks(text: str) -> list[tuple[str, object]]:
    """A passage as ("text", str) and ("table", (header, rows)) blocks: two or more consecutive
    row lines become one table whose columns are the headers the rows name."""
    lines = text.split("\n")
    blocks: list[tuple[str, object]] = []
    buffer: list[str] = []
    i = 0
    while i < len(lines):
        run: list[tuple[str, list[tuple[str, str]]]] = []
        j = i
        while j < len(lines):
            parsed = parse_row(lines[j])
            if parsed is None:
                break
            run.append(parsed)
            j += 1
        if len(run) >= 2:
            if buffer:
                blocks.append(("text", "\n".join(buffer)))
                buffer = []
            headers: list[str] = []
            for _, cells in run:
                for head, _ in cells:
                    if head not in headers:
                        headers.append(head)
            label_head = ""
            labels = [label for label, _ in run]
            prefixes = {label.partition(": ")[0] for label in labels if ": " in label}
            if len(prefixes) == 1 and all(": " in label for label in labels):
                label_head = prefixes.pop()
                labels = [label.partition(": ")[2] for label in labels]
            rows = [[label] + [dict(cells).get(h, "") for h in headers] for label, (_, cells) in zip(labels, run)]
            blocks.append(("table", ([label_head] + headers, rows)))
            i = j
            continue
        buffer.append(lines[i])
        i += 1
    if buffer:
        blocks.append(("text", "\n".join(buffer)))
    return blocks


def is_table_caption(text: str) -> bool:
    """A paragraph that captions a table: "Tabel 2 ..." / "Table 2 ..."."""
    return bool(_CAPTION.match(text)) and len(text) <= 200


# -- DOCX and HTML ------------------------------------------------------------------------


def docx_table(table, caption: str = "") -> Table | None:
    """A python-docx table as a Table (merged cells repeat their text, as Word shows them)."""
    cells = []
    for row in table.rows:
        values = [clean_cell(c.text) for c in row.cells]
        deduped = [v if j == 0 or row.cells[j]._tc is not row.cells[j - 1]._tc else "" for j, v in enumerate(values)]
        cells.append(deduped)
    return make_table(cells, caption)


def html_table(element) -> Table | None:
    """A BeautifulSoup <table> as a Table, with its <caption>; colspans repeat the cell."""
    caption_el = element.find("caption")
    caption = caption_el.get_text(" ", strip=True) if caption_el else ""
    cells = []
    for tr in element.find_all("tr"):
        if tr.find_parent("table") is not element:
            continue
        row = []
        for cell in tr.find_all(["td", "th"], recursive=False):
            text = clean_cell(cell.get_text(" ", strip=True))
            try:
                span = max(1, min(20, int(cell.get("colspan", 1))))
            except ValueError:
                span = 1
            row.extend([text] + [""] * (span - 1))
        cells.append(row)
    return make_table(cells, caption)


# -- PDF (pdfplumber, on pages that show signs of a table) ----------------------------------

_NUMERIC_TOKEN = re.compile(r"(?<!\S)[-+(]?[€$]?\s?\d+(?:[.,]\d+)*\s?%?\)?(?!\S)")
# pdfplumber's settings for tables without rules: columns from aligned words.
_TEXT_SETTINGS = {"vertical_strategy": "text", "horizontal_strategy": "text", "min_words_vertical": 2,
                  "min_words_horizontal": 1, "text_x_tolerance": 2}


def _numeric_row(text: str) -> bool:
    """A line that looks like a row of a borderless table: a label and two or more numbers."""
    return len(_NUMERIC_TOKEN.findall(text)) >= 2 and len(text.split()) <= 14


def numeric_runs(texts: list[str], min_rows: int = 3) -> list[tuple[int, int]]:
    """(first, last) line indexes of runs of >= min_rows table-like lines (one gap line allowed)."""
    runs: list[tuple[int, int]] = []
    start = last = None
    for i, text in enumerate(texts):
        if _numeric_row(text):
            if start is None:
                start = i
            last = i
        elif start is not None and i - last > 1:
            rows = sum(_numeric_row(t) for t in texts[start : last + 1])
            if rows >= min_rows:
                runs.append((start, last))
            start = last = None
    if start is not None and sum(_numeric_row(t) for t in texts[start : last + 1]) >= min_rows:
        runs.append((start, last))
    return runs


class PdfTableFinder:
    """Tables on PDF pages by pdfplumber: ruled tables where the page draws lines, borderless
    ones where a run of lines reads like rows of numbers. pdfplumber costs about a second per
    page, so other pages are not given to it."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pdf = None

    def _page(self, index: int):
        if self._pdf is None:
            import io

            import pdfplumber

            self._pdf = pdfplumber.open(io.BytesIO(self._data))
        return self._pdf.pages[index]

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()
            self._pdf = None

    def find(self, index: int, pdfium_page, lines: list) -> list[Table]:
        """Tables on page `index` (0-based); `lines` are the page's pdfium lines (text, top, size)."""
        import pypdfium2.raw as raw

        try:
            paths = sum(1 for _ in pdfium_page.get_objects(filter=[raw.FPDF_PAGEOBJ_PATH], max_depth=2))
        except Exception:  # noqa: BLE001 - no rules known: only the borderless check
            paths = 0
        runs = numeric_runs([ln.text for ln in lines])
        if paths < 3 and not runs:
            return []
        try:
            page = self._page(index)
            found: list[Table] = []
            if paths >= 3:
                for t in page.find_tables():
                    table = make_table(t.extract(x_tolerance=1.5))
                    if table is not None:
                        table.top, table.bottom = t.bbox[1], t.bbox[3]
                        found.append(table)
            height = float(page.height)
            for first, last in runs:
                # The header row above the numbers (unless that line is the caption).
                above = first - 1 if first > 0 and not _CAPTION.match(lines[first - 1].text.strip()) else first
                top_line, bottom_line = lines[above], lines[last]
                if top_line.top is None or bottom_line.top is None:
                    continue
                top = height - top_line.top - 2
                bottom = height - bottom_line.top + (bottom_line.size or 10) * 1.2
                if any(t.top - 3 <= top <= t.bottom or t.top <= bottom <= t.bottom + 3 for t in found):
                    continue  # already found as a ruled table
                region = page.crop((0, max(0, top), float(page.width), min(height, bottom)))
                for t in region.find_tables(_TEXT_SETTINGS):
                    t = _widened(region, t)
                    table = make_table(t.extract(x_tolerance=1.5))
                    if table is not None and _plausible_borderless(table):
                        table.top, table.bottom = t.bbox[1], t.bbox[3]
                        found.append(table)
            return sorted(found, key=lambda t: t.top)
        except Exception:  # noqa: BLE001 - a table we cannot read stays text, it never stops the PDF
            import logging

            logging.getLogger(__name__).debug("table detection failed on page %d", index + 1, exc_info=True)
            return []


def _widened(region, found):
    """The borderless table `found` again with its right edge past every word that continues a
    cell across it. pdfplumber's text strategy ends the last column where its aligned words end,
    so a header wider than its numbers lost its tail ("Wachttijd 2023" became "Wachttijd")."""
    right = found.bbox[2]
    words = region.extract_words(x_tolerance=_TEXT_SETTINGS["text_x_tolerance"])
    new_right = right
    lines: dict[int, list[dict]] = {}
    for word in words:
        lines.setdefault(round(word["top"]), []).append(word)
    for line in lines.values():
        line.sort(key=lambda w: w["x0"])
        for before, word in zip(line, line[1:]):
            # A gap of about one space continues the same cell; a column gap is wider.
            space = 0.5 * (word["bottom"] - word["top"])
            if before["x0"] < new_right and word["x1"] > new_right and word["x0"] - before["x1"] <= space:
                new_right = word["x1"]
    if new_right <= right + 0.5:
        return found
    edges = sorted({round(cell[0], 2) for cell in found.cells if cell[0] < right - 0.5}) + [new_right + 0.5]
    settings = {**_TEXT_SETTINGS, "vertical_strategy": "explicit", "explicit_vertical_lines": edges}
    for table in region.find_tables(settings):
        if abs(table.bbox[1] - found.bbox[1]) < 1:
            return table
    return found


_NUMERIC_CELL = re.compile(r"^[-+(]?[€$]?\s?\d+(?:[.,]\d+)*\s?%?\)?$")


def _plausible_borderless(table: Table) -> bool:
    """Aligned words are a table when most body rows fill two or more cells with short values and
    every column after the first holds numbers (prose and lists in columns do not)."""
    filled = [sum(1 for c in row if c) for row in table.rows]
    if len(table.rows) < 2 or sum(f >= 2 for f in filled) < 0.8 * len(filled):
        return False
    if any(len(c) > 60 for row in table.rows for c in row):
        return False
    for j in range(1, table.width):
        values = [row[j] for row in table.rows if row[j]]
        if not values or sum(bool(_NUMERIC_CELL.match(v)) for v in values) < 0.8 * len(values):
            return False
    return True


def _own_header(first: Table, second: Table) -> bool:
    """Does `second` start with a header of its own (a new table), not with a row of `first`?
    Its first row differs from first's header and holds words in every column where first's body
    holds numbers (one number there makes it a row: a cut cell must not split a table)."""
    if second.header == first.header:
        return False
    numeric_columns = []
    for j in range(first.width):
        values = [row[j] for row in first.rows if row[j]]
        if values and sum(bool(_NUMERIC_CELL.match(v)) for v in values) >= 0.8 * len(values):
            numeric_columns.append(j)
    return bool(numeric_columns) and not any(_NUMERIC_CELL.match(second.header[j]) for j in numeric_columns)


def merge_continued(tables_by_page: list[list[Table]], heights: list[float]) -> None:
    """A table that ends low on a page and one with as many columns high on the next page are one
    table crossing the page break: its rows join the first (a repeated header row is dropped).
    Not when the second has a caption or a header of its own: then it is a new table."""
    for p in range(len(tables_by_page) - 1):
        if not tables_by_page[p] or not tables_by_page[p + 1]:
            continue
        first, second = tables_by_page[p][-1], tables_by_page[p + 1][0]
        if first.width != second.width or first.bottom < 0.7 * heights[p] or second.top > 0.3 * heights[p + 1]:
            continue
        if second.caption or _own_header(first, second):
            continue
        rows = [second.header] + second.rows if second.header != first.header else second.rows
        first.rows.extend(rows)
        second.extra["merged_into"] = first
        tables_by_page[p + 1].pop(0)
