"""Files -> LangChain Documents with metadata.

Every loader returns Markdown-ish text (headings as `#` lines, list items as `- `)
so one chunker handles all formats. PDFs give one Document per page with `page` set.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from langchain_core.documents import Document

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt", ".pdf", ".docx", ".html", ".htm"}
KINDS = ("rapport", "factsheet", "handreiking", "webpagina", "other")
MANIFEST_NAME = "manifest.toml"
MAX_FILE_BYTES = 200 * 1024 * 1024
# Text formats this large are logs or dumps, not reports: tens of thousands of chunks
# that would take the better part of an hour to embed on a laptop.
MAX_TEXT_BYTES = 10 * 1024 * 1024
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


class UnreadableFile(Exception):
    """A file that is skipped; the message says why (English, one line)."""


@dataclass
class LoadedFile:
    """One source file: its pages/parts as Documents and a hash of its content."""

    path: Path
    doc_id: str
    content_hash: str
    documents: list[Document] = field(default_factory=list)


def doc_id_for(path: Path) -> str:
    """The document id is the file stem."""
    return path.stem


def read_manifest(folder: Path) -> dict[str, dict]:
    """Per-document metadata from `<folder>/manifest.toml` (tables keyed by doc_id)."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def guess_kind(name: str) -> str:
    """Guess the document kind from its file name."""
    lowered = name.lower()
    for kind in ("rapport", "factsheet", "handreiking"):
        if kind in lowered:
            return kind
    if "report" in lowered or "onderzoek" in lowered:
        return "rapport"
    return "other"


def decode_text(data: bytes) -> str:
    """Decode text bytes: BOM-marked UTF-16/UTF-8, else UTF-8, else Windows-1252/Latin-1."""
    head = data[:4096]
    if b"\x00" in head and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # UTF-16 without a byte-order mark: every other byte of ASCII-range text is NUL.
        if len(head) >= 4 and head[1::2].count(0) > 0.9 * len(head[1::2]) and len(data) % 2 == 0:
            return data.decode("utf-16-le", errors="replace")
        if len(head) >= 4 and head[0::2].count(0) > 0.9 * len(head[0::2]) and len(data) % 2 == 0:
            return data.decode("utf-16-be", errors="replace")
        raise UnreadableFile("binary content (NUL bytes) in a text file")
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def split_front_matter(text: str) -> tuple[dict, str]:
    """Split a leading YAML front-matter block from Markdown text."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return {}, text
    if not isinstance(meta, dict):
        return {}, text
    return meta, text[match.end():]


def _first_heading(text: str) -> str | None:
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.+)$", line.strip())
        if m:
            return m.group(1).strip()
    return None


def _load_markdown(data: bytes) -> tuple[dict, list[tuple[int | None, str]]]:
    meta, body = split_front_matter(decode_text(data))
    return meta, [(None, body)]


def _load_html(data: bytes) -> tuple[dict, list[tuple[int | None, str]]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data), "html.parser")
    for tag in soup(["script", "style", "noscript", "nav", "form", "svg"]):
        tag.decompose()
    for tag in soup(["header", "footer"]):  # page furniture, but an article's header holds its title
        if tag.find_parent(["article", "main"]) is None:
            tag.decompose()
    meta: dict = {}
    if soup.title and soup.title.get_text(strip=True):
        meta["title"] = soup.title.get_text(" ", strip=True)
    root = soup.body or soup
    lines: list[str] = []
    for el in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th", "blockquote", "pre"]):
        if el.find_parent(["li", "td", "th", "blockquote"]) is not None and el.name in {"p"}:
            continue
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        if el.name[0] == "h":
            lines.append("\n" + "#" * int(el.name[1]) + " " + text + "\n")
        elif el.name == "li":
            lines.append("- " + text)
        else:
            lines.append("\n" + text + "\n")
    return meta, [(None, "\n".join(lines))]


def _load_docx(data: bytes) -> tuple[dict, list[tuple[int | None, str]]]:
    import io
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableFile(f"not a valid DOCX file ({exc.__class__.__name__})") from exc
    meta: dict = {}
    if document.core_properties.title:
        meta["title"] = document.core_properties.title
    lines: list[str] = []
    for para in document.paragraphs:
        text = " ".join(para.text.split())
        if not text:
            continue
        style = (para.style.name or "").lower() if para.style is not None else ""
        level = re.match(r"heading (\d)", style) or (re.match(r"title", style) and None)
        if level:
            lines.append("\n" + "#" * int(level.group(1)) + " " + text + "\n")
        elif style == "title":
            lines.append("\n# " + text + "\n")
        elif "list" in style:
            lines.append("- " + text)
        else:
            lines.append("\n" + text + "\n")
    for table in document.tables:
        for row in table.rows:
            cells = [" ".join(c.text.split()) for c in row.cells]
            if any(cells):
                lines.append("- " + " | ".join(cells))
    return meta, [(None, "\n".join(lines))]


def _pdf_outline(reader) -> dict[int, list[str]]:
    """Map 1-based page number -> outline titles that start on it (level order kept)."""
    starts: dict[int, list[tuple[int, str]]] = {}

    def walk(items, depth):
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
                continue
            try:
                page = reader.get_destination_page_number(item) + 1
            except Exception:  # noqa: BLE001 - broken outline entries are common
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if title:
                starts.setdefault(page, []).append((depth, title))

    try:
        walk(reader.outline, 0)
    except Exception:  # noqa: BLE001
        return {}
    return {p: [f"{'#' * min(d + 1, 6)} {t}" for d, t in items] for p, items in starts.items()}


def _load_pdf(data: bytes) -> tuple[dict, list[tuple[int | None, str]]]:
    import io
    import zlib

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise UnreadableFile("encrypted PDF (password required)")
            except UnreadableFile:
                raise
            except Exception as exc:  # noqa: BLE001 - pypdf raises several types here
                raise UnreadableFile("encrypted PDF (password required)") from exc
        meta: dict = {}
        info = reader.metadata
        if info and info.title and str(info.title).strip():
            meta["title"] = str(info.title).strip()
        outline = _pdf_outline(reader)
        pages: list[tuple[int | None, str]] = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            headings = outline.get(number, [])
            body = "\n".join(headings + [text]) if headings else text
            pages.append((number, body))
    except UnreadableFile:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError, NotImplementedError,
            RecursionError, zlib.error) as exc:
        raise UnreadableFile(f"corrupt or unreadable PDF ({exc.__class__.__name__})") from exc
    if not any(text.strip() for _, text in pages):
        raise UnreadableFile("PDF has no text layer (scanned?); OCR it first")
    return meta, pages


_LOADERS = {
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".txt": _load_markdown,
    ".html": _load_html,
    ".htm": _load_html,
    ".docx": _load_docx,
    ".pdf": _load_pdf,
}


def _sniff_mismatch(suffix: str, data: bytes) -> str | None:
    """Say why content does not match its extension, or None."""
    if suffix == ".pdf" and not data.lstrip()[:5].startswith(b"%PDF"):
        if data.startswith(b"PK"):
            return "file named .pdf is a ZIP archive, not a PDF"
        return "file named .pdf does not start with a PDF header"
    if suffix == ".docx" and not data.startswith(b"PK"):
        return "file named .docx is not a DOCX (ZIP) file"
    return None


def load_file(path: Path, manifest: dict[str, dict] | None = None) -> LoadedFile:
    """Load one file into Documents; raise UnreadableFile with the reason to skip it."""
    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        raise UnreadableFile(f"unsupported file type '{suffix or path.name}'")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UnreadableFile(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        if suffix in TEXT_SUFFIXES and size > MAX_TEXT_BYTES:
            raise UnreadableFile(f"text file is larger than {MAX_TEXT_BYTES // (1024 * 1024)} MB; split it into smaller files")
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read file ({exc.strerror or exc})") from exc
    if not data.strip():
        raise UnreadableFile("empty file")
    mismatch = _sniff_mismatch(suffix, data)
    if mismatch:
        raise UnreadableFile(mismatch)
    meta, parts = _LOADERS[suffix](data)
    if not any(text.strip() for _, text in parts):
        raise UnreadableFile("no text found")

    doc_id = doc_id_for(path)
    extra = (manifest or {}).get(doc_id, {})
    merged = {**meta, **extra}
    title = str(merged.get("title") or _first_heading(parts[0][1]) or path.stem.replace("_", " ").replace("-", " "))
    kind = str(merged.get("kind") or guess_kind(path.name))
    if kind not in KINDS:
        kind = "other"
    year = merged.get("year")
    base = {
        "doc_id": doc_id,
        "title": title,
        "kind": kind,
        "year": int(year) if isinstance(year, int) or (isinstance(year, str) and year.isdigit()) else None,
        "publisher": str(merged.get("publisher") or ""),
        "url": str(merged.get("url") or ""),
        "source": str(path),
    }
    hasher = hashlib.sha256(data)
    hasher.update(repr(sorted((k, v) for k, v in base.items() if k != "source")).encode())
    documents = [
        Document(page_content=text, metadata={**base, "page": page})
        for page, text in parts
        if text.strip()
    ]
    return LoadedFile(path=path, doc_id=doc_id, content_hash=hasher.hexdigest()[:32], documents=documents)


def discover(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand folders into candidate files; return (files, skipped-with-reason)."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for root in paths:
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_dir() or p.name == MANIFEST_NAME or any(part.startswith(".") for part in p.relative_to(root).parts):
                    continue
                if p.suffix.lower() in SUPPORTED_SUFFIXES:
                    files.append(p)
                else:
                    skipped.append((p, f"unsupported file type '{p.suffix.lower() or p.name}'"))
        elif root.is_file():
            files.append(root)
        else:
            skipped.append((root, "no such file or folder"))
    return files, skipped
