"""Files -> LangChain Documents with metadata.

Every loader returns Markdown-ish text (headings as `#` lines, list items as `- `)
so one chunker handles all formats. PDFs give one Document per page with `page` (physical) and `page_label` (printed) set;
PDF extraction and cleaning live in `rag.pdf`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml
from langchain_core.documents import Document

from .identity import CORPUS_SOURCE, DocIdentity, doc_name
from .pdf import clean_text

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt", ".pdf", ".docx", ".html", ".htm", ".jpg", ".jpeg", ".png", ".tif", ".tiff"}
KINDS = ("rapport", "factsheet", "handreiking", "webpagina", "other")
MANIFEST_NAME = "manifest.toml"
MAX_FILE_BYTES = 200 * 1024 * 1024
# Text formats this large are logs or dumps, not reports: tens of thousands of chunks
# that would take the better part of an hour to embed on a laptop.
MAX_TEXT_BYTES = 10 * 1024 * 1024
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}
# Bump when a loader's output changes for the same bytes, so unchanged files are parsed again.
LOADER_VERSION = "3"
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
    notes: list[str] = field(default_factory=list)  # pages that could not be read, for the ingest report

    @property
    def name(self) -> str:
        """The document's readable name (path within its source, no suffix)."""
        return doc_name(self.doc_id)


def doc_id_for(path: Path) -> str:
    """The key of a file's entry in its folder's `manifest.toml`: the file stem.
    (The document id is its source and path, see `rag.identity`.)"""
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
    from .tables import html_table, to_markdown

    root = soup.body or soup
    lines: list[str] = []
    for el in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th", "blockquote", "pre", "table"]):
        if el.find_parent("table") is not None:
            continue  # read with its table
        if el.name == "table":
            table = html_table(el)
            if table is not None:
                lines.append(to_markdown(table))
            else:  # a layout table: its cells as paragraphs
                lines.extend("\n" + t + "\n" for c in el.find_all(["td", "th"])
                             if (t := " ".join(c.get_text(" ", strip=True).split())))
            continue
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
    from docx.table import Table as DocxTable

    from .tables import docx_table, is_table_caption, to_markdown

    lines: list[str] = []
    for para in document.iter_inner_content():
        if isinstance(para, DocxTable):
            caption = ""
            if lines and is_table_caption(lines[-1].strip()):
                caption = lines.pop().strip()
            table = docx_table(para, caption)
            if table is not None:
                lines.append(to_markdown(table))
            continue
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
        elif style == "caption":
            lines.append("\n" + text)
        else:
            lines.append("\n" + text + "\n")
    return meta, [(None, "\n".join(lines))]


def _load_pdf(data: bytes, on_page=None, notes: list[str] | None = None) -> tuple[dict, list[tuple[int | None, str, str | None]]]:
    from .ocr import OCR_MARK
    from .pdf import PdfError, extract_pdf

    try:
        content = extract_pdf(data, on_page)
    except PdfError as exc:
        raise UnreadableFile(str(exc)) from exc
    pages = [(p.number, p.text, f"{p.label} ({OCR_MARK})" if p.ocr else p.label) for p in content.pages]
    if not any(text.strip() for _, text, _ in pages):
        reason = "; ".join(content.notes) or "no page shows text or a scan"
        raise UnreadableFile(f"PDF has no text layer ({reason})")
    if notes is not None:
        notes.extend(content.notes)
    return content.meta, pages


def _load_image(data: bytes, on_page=None, notes: list[str] | None = None) -> tuple[dict, list[tuple[int | None, str, str | None]]]:
    from .ocr import OCR_MARK, OcrUnavailable, image_frames, ocr_images, page_list
    from .pdf import ocr_page_texts

    try:
        frames = image_frames(data)
        results = ocr_images(frames, on_page)
    except ValueError as exc:
        raise UnreadableFile(str(exc)) from exc
    except OcrUnavailable as exc:
        raise UnreadableFile(f"image not read because {exc}") from exc
    unread = [i + 1 for i, r in enumerate(results) if not r.readable]
    if len(unread) == len(results):
        raise UnreadableFile("no text recognised in the image")
    if unread and notes is not None:
        notes.append(f"{page_list(unread)}: no text recognised in the scan")
    texts = ocr_page_texts([r.text if r.readable else "" for r in results])
    single = len(results) == 1  # one photo or scan: no page number to cite, only the mark
    return {}, [(n, text, f"({OCR_MARK})" if single else f"{n} ({OCR_MARK})") for n, text in texts]


_LOADERS = {
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".txt": _load_markdown,
    ".html": _load_html,
    ".htm": _load_html,
    ".docx": _load_docx,
    ".pdf": _load_pdf,
    ".jpg": _load_image,
    ".jpeg": _load_image,
    ".png": _load_image,
    ".tif": _load_image,
    ".tiff": _load_image,
}
_PAGED = {".pdf", ".jpg", ".jpeg", ".png", ".tif", ".tiff"}


def _sniff_mismatch(suffix: str, data: bytes) -> str | None:
    """Say why content does not match its extension, or None."""
    if suffix == ".pdf" and not data.lstrip()[:5].startswith(b"%PDF"):
        if data.startswith(b"PK"):
            return "file named .pdf is a ZIP archive, not a PDF"
        return "file named .pdf does not start with a PDF header"
    if suffix == ".docx" and not data.startswith(b"PK"):
        return "file named .docx is not a DOCX (ZIP) file"
    return None


def read_source(path: Path) -> bytes:
    """The raw bytes of a supported file; raise UnreadableFile with the reason to skip it."""
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
    return data


def content_hash(data: bytes, path: Path, manifest: dict[str, dict] | None = None) -> str:
    """What decides a document's chunks besides the chunker: its bytes, name, manifest entry
    and the loader version. Computed before parsing, so unchanged files are not parsed again."""
    from .ocr import ocr_signature
    from .pdf import PDF_TEXT_VERSION
    from .tables import TABLES_VERSION

    extra = (manifest or {}).get(doc_id_for(path), {})
    hasher = hashlib.sha256(data)
    hasher.update(f"\x00{LOADER_VERSION}\x00{PDF_TEXT_VERSION}\x00{TABLES_VERSION}\x00{path.name}\x00".encode())
    if path.suffix.lower() in _PAGED:  # installing Tesseract later must re-read scanned pages
        hasher.update(ocr_signature().encode())
    hasher.update(repr(sorted((str(k), repr(v)) for k, v in extra.items())).encode())
    return hasher.hexdigest()[:32]


def load_file(
    path: Path,
    manifest: dict[str, dict] | None = None,
    data: bytes | None = None,
    on_page: Callable[[int, int], None] | None = None,
    identity: DocIdentity | None = None,
) -> LoadedFile:
    """Load one file into Documents; raise UnreadableFile with the reason to skip it.

    `data` is the file's bytes when the caller has read them already (`read_source`);
    `on_page(done, total)` reports PDF pages as they are read; `identity` is the document's
    source and path (default: the file name in the corpus source)."""
    suffix = path.suffix.lower()
    if data is None:
        data = read_source(path)
    notes: list[str] = []
    if suffix in _PAGED:
        meta, parts = _LOADERS[suffix](data, on_page, notes)
    else:
        meta, raw_parts = _LOADERS[suffix](data)
        parts = [(page, clean_text(text), None) for page, text in raw_parts]
    if not any(text.strip() for _, text, _ in parts):
        raise UnreadableFile("no text found")

    doc_id = (identity or DocIdentity(CORPUS_SOURCE, path.name)).doc_id
    extra = (manifest or {}).get(doc_id_for(path), {})
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
    documents = [
        Document(page_content=text, metadata={**base, "page": page, "page_label": label if label else (str(page) if page else None)})
        for page, text, label in parts
        if text.strip()
    ]
    return LoadedFile(path=path, doc_id=doc_id, content_hash=content_hash(data, path, manifest), documents=documents,
                      notes=notes)


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
