"""Answer lines: the quotable units of a chunk (sentences, list items, chart panels).

Lines are cut and embedded once, at ingest, and stored beside the chunks, so answering a
question costs one forward pass (the question's) whatever passages come back.

Chart panels come out of PDFs and slides as a line of values followed by one short
label line per value ("33% 40% 27%", "(zeer) ontevreden", ...). Such a panel becomes
one line that pairs each value with its label; a later value line with the same number
of values and no labels of its own borrows the labels of the panel before it in the
same chunk. The rule is about the shape of the text, not about any one document.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

import numpy as np

from .chunking import PATH_SEPARATOR

# Bump when line cutting changes, so `rag ingest` recomputes stored lines.
LINES_VERSION = "lines-v2"
ITEM_MARK = re.compile(r"^\s*(?:[-*+•–∗✓✗]|\d{1,3}[.)])\s+(?:[✓✗]\s+)?")
_VALUE = r"[-+]?\d+(?:[.,]\d+)?(?:\s?%)?"
_VALUES_ONLY = re.compile(rf"^(?:(?P<label>[^:\d][^:]{{0,60}}):\s*)?(?P<values>{_VALUE}(?:\s+{_VALUE})+)\s*$")
_LABELLED_PAIR = re.compile(rf"([A-Za-zÀ-ÿ][^\d:;]{{1,40}}?)\s+({_VALUE})(?=\s|$)")
_MAX_LABEL_CHARS = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    chunk_id TEXT NOT NULL, position INTEGER NOT NULL, text TEXT NOT NULL,
    is_item INTEGER NOT NULL, vector BLOB, PRIMARY KEY (chunk_id, position));
"""


@dataclass
class Line:
    """One quotable unit of a chunk, in order."""

    position: int
    text: str
    is_item: bool


def _values(text: str) -> list[str]:
    return re.findall(_VALUE, text)


def _is_label(line: str) -> bool:
    return 0 < len(line) <= _MAX_LABEL_CHARS and not any(ch.isdigit() for ch in line) and not ITEM_MARK.match(line)


def _pair(prefix: str, values: list[str], labels: list[str]) -> str:
    pairs = "; ".join(f"{v} {lab}" for v, lab in zip(values, labels))
    return f"{prefix}: {pairs}" if prefix else pairs


def split_lines(text: str) -> list[Line]:
    """Cut a chunk's text into answer lines, pairing chart values with their labels."""
    raw = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines: list[Line] = []
    labels: list[str] = []  # the last panel's labels, for value lines that have none
    i = 0
    while i < len(raw):
        line = raw[i]
        panel = _VALUES_ONLY.match(line)
        if panel:
            values = _values(panel.group("values"))
            prefix = (panel.group("label") or "").strip()
            following = raw[i + 1 : i + 1 + len(values)]
            if len(following) == len(values) and all(_is_label(f) for f in following):
                labels = following
                lines.append(Line(len(lines), _pair(prefix, values, labels), False))
                i += 1 + len(values)
                continue
            if labels and len(labels) == len(values):
                lines.append(Line(len(lines), _pair(prefix, values, labels), False))
                i += 1
                continue
        prefix, _, rest = line.partition(": ")
        pairs = _LABELLED_PAIR.findall(rest) if rest else []
        if len(pairs) >= 2 and "".join(a + b for a, b in pairs).replace(" ", "") == rest.replace(" ", ""):
            labels = [a.strip() for a, _ in pairs]
        item = bool(ITEM_MARK.match(line))
        lines.append(Line(len(lines), ITEM_MARK.sub("", line) if item else line, item))
        i += 1
    return lines


def subsection(section: str) -> str:
    """The heading path below the document root ('' for the root itself)."""
    return PATH_SEPARATOR.join(section.split(PATH_SEPARATOR)[1:])


def embed_text(section: str, line: Line) -> str:
    """What a line is embedded as: its headings below the document root, then the line."""
    sub = subsection(section)
    return f"{sub}: {line.text}" if sub else line.text


# -- storage (a table in the index catalog) ------------------------------------------
def to_blob(vector: np.ndarray) -> bytes:
    """Store vectors as float16: half the space, and cosine differences stay below 1e-3."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def save_lines(db: sqlite3.Connection, chunk_id: str, lines: list[Line], vectors: np.ndarray) -> None:
    """Replace the stored lines of one chunk."""
    db.execute("DELETE FROM lines WHERE chunk_id=?", (chunk_id,))
    db.executemany(
        "INSERT INTO lines VALUES (?,?,?,?,?)",
        [(chunk_id, ln.position, ln.text, int(ln.is_item), to_blob(v)) for ln, v in zip(lines, vectors)],
    )


def chunks_with_lines(db: sqlite3.Connection, chunk_ids: list[str]) -> set[str]:
    """Which of these chunks have stored lines (no vectors read)."""
    if not chunk_ids:
        return set()
    marks = ",".join("?" * len(chunk_ids))
    rows = db.execute(f"SELECT DISTINCT chunk_id FROM lines WHERE chunk_id IN ({marks})", list(chunk_ids))
    return {r[0] for r in rows}


def load_lines(db: sqlite3.Connection, chunk_ids: list[str]) -> dict[str, tuple[list[Line], np.ndarray]]:
    """Stored lines and their vectors per chunk id (chunks without stored lines are left out)."""
    if not chunk_ids:
        return {}
    marks = ",".join("?" * len(chunk_ids))
    rows = db.execute(
        f"SELECT chunk_id, position, text, is_item, vector FROM lines WHERE chunk_id IN ({marks}) "
        "ORDER BY chunk_id, position",
        list(chunk_ids),
    ).fetchall()
    grouped: dict[str, list] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    out: dict[str, tuple[list[Line], np.ndarray]] = {}
    for cid, group in grouped.items():
        if any(r[4] is None for r in group):
            continue
        lines = [Line(r[1], r[2], bool(r[3])) for r in group]
        vectors = np.vstack([np.frombuffer(r[4], dtype=np.float16) for r in group]).astype(np.float32)
        out[cid] = (lines, vectors)
    return out
