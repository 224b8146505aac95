"""Files -> LangChain Documents with metadata.

Every loader returns Markdown-ish text (headings as `#` lines, list items as `- `)
so one chunker handles all formats. PDFs give one Document per page with `page` (physical) and `page_label` (printed) set;
PDF extraction and cleaning live in `rag.pdf`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml
from langchain_core.documents import Document

from .identity import CORPUS_SOURCE, DocIdentity, doc_name
from .limits import Budget, LimitExceeded, Limits, cap_words, check_text, check_zip
from .metadata import KINDS, validate_metadata  # noqa: F401 - KINDS re-exported
from .pdf import clean_text

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt", ".pdf", ".docx", ".html", ".htm", ".jpg", ".jpeg", ".png", ".tif", ".tiff"}
MANIFEST_NAME = "manifest.toml"
MAX_FILE_BYTES = 200 * 1024 * 1024
# Text formats this large are logs or dumps, not reports: tens of thousands of chunks
# that would take the better part of an hour to embed on a laptop.
MAX_TEXT_BYTES = 10 * 1024 * 1024
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}
# Bump when a loader's output changes for the same bytes, so unchanged files are parsed again.
LOADER_VERSION = "4"
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
# TOML integers are 64-bit; a longer one (a 5,000-digit year) is read as text, so metadata
# validation can drop that one field by name instead of losing the whole manifest.
_TOML_LONG_INT = re.compile(r"(?m)^(\s*[A-Za-z0-9_.\"'-]+\s*=\s*)([+-]?[0-9_]{20,})(\s*(?:#.*)?)$")


class _FrontMatterLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that an integer too long for int() stays text (for the
    same reason as _TOML_LONG_INT)."""

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            return self.construct_scalar(node)


_FrontMatterLoader.add_constructor("tag:yaml.org,2002:int", _FrontMatterLoader.construct_yaml_int)


class UnreadableFile(Exception):
    """A file that is skipped; the message says why (English, one line)."""


@dataclass
class LoadedFile:
    """One source file: its pages/parts as Documents and a hash of its content."""

    path: Path
    doc_id: str
    content_hash: str
    documents: list[Document] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # metadata fields dropped, with file and field
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
        data = tomllib.loads(_TOML_LONG_INT.sub(r'\1"\2"\3', path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError, OSError, RecursionError) as exc:
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
        meta = yaml.load(match.group(1), Loader=_FrontMatterLoader) or {}  # noqa: S506 - a SafeLoader
    except Exception:  # noqa: BLE001 - YAMLError, but also ValueError (a 5,000-digit int), RecursionError
        log.warning("ignoring front matter that is not valid YAML")
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


def _load_markdown(data: bytes, budget: Budget, limits: Limits) -> tuple[dict, list[tuple[int | None, str]]]:
    meta, body = split_front_matter(decode_text(data))
    return meta, [(None, body)]


_HTML_BLOCKS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th", "blockquote", "pre"}
_HTML_DROP = {"script", "style", "noscript", "nav", "form", "svg"}
# A <p> inside one of these is part of that block's text, not a block of its own.
_HTML_CONTAINERS = {"li", "td", "th", "blockquote"}


def _html_lines(root, budget: Budget, limits: Limits) -> list[str]:
    """Block elements' text, each piece of text once, in one iterative walk: linear in the
    size of the tree whatever its depth (nested blocks each give their own lines)."""
    from bs4.element import CData, NavigableString, Tag

    from .tables import html_table, to_markdown

    lines: list[str] = []
    parts: list[str] = []
    kinds: list[str | None] = [None]  # the block text goes to; None = outside blocks (ignored)
    size = containers = articles = steps = 0

    def flush() -> None:
        nonlocal size
        text = " ".join(" ".join(parts).split())
        parts.clear()
        name = kinds[-1]
        if not text or name is None:
            return
        if name[0] == "h":
            lines.append("\n" + "#" * int(name[1]) + " " + text + "\n")
        elif name == "li":
            lines.append("- " + text)
        else:
            lines.append("\n" + text + "\n")
        size += len(lines[-1])
        check_text(size, 0, limits)

    stack: list[tuple] = [(iter(root.contents), None)]
    while stack:
        children, opened = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            if opened:
                is_block, is_container, is_article = opened
                if is_block:
                    flush()
                    kinds.pop()
                containers -= is_container
                articles -= is_article
            continue
        steps += 1
        if steps % 1024 == 0:
            budget.check()
        if isinstance(child, Tag):
            name = child.name
            if name in _HTML_DROP or (name in ("header", "footer") and not articles):
                continue  # page furniture, but an article's header holds its title
            if name == "table" and (table := html_table(child)) is not None:
                flush()  # a data table is one unit; a layout table's cells are read as blocks below
                lines.append(to_markdown(table))
                size += len(lines[-1])
                check_text(size, 0, limits)
                continue
            is_block = name in _HTML_BLOCKS and not (name == "p" and containers)
            if is_block:
                flush()
                kinds.append(name)
            is_container, is_article = name in _HTML_CONTAINERS, name in ("article", "main")
            containers += is_container
            articles += is_article
            stack.append((iter(child.contents), (is_block, is_container, is_article)))
        elif type(child) in (NavigableString, CData) and kinds[-1] is not None:
            text = child.strip()
            if text:
                parts.append(text)
    flush()
    return lines


def _load_html(data: bytes, budget: Budget, limits: Limits) -> tuple[dict, list[tuple[int | None, str]]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data), "html.parser")
    budget.check()
    meta: dict = {}
    if soup.title and soup.title.get_text(strip=True):
        meta["title"] = soup.title.get_text(" ", strip=True)
    lines = _html_lines(soup.body or soup, budget, limits)
    return meta, [(None, "\n".join(lines))]


def _load_docx(data: bytes, budget: Budget, limits: Limits) -> tuple[dict, list[tuple[int | None, str]]]:
    import io

    import docx
    from docx.enum.style import WD_STYLE_TYPE

    try:
        check_zip(data, limits)  # before python-docx inflates every part into memory
    except LimitExceeded as exc:
        raise UnreadableFile(str(exc)) from exc
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - BadZipFile, KeyError, lxml's XMLSyntaxError, ...
        raise UnreadableFile(f"not a valid DOCX file ({exc.__class__.__name__})") from exc
    budget.check()
    meta: dict = {}
    if document.core_properties.title:
        meta["title"] = document.core_properties.title
    # Style names once: python-docx's `paragraph.style` scans every style per paragraph.
    styles = {s.style_id: s.name or "" for s in document.styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
    default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    default_name = (default.name or "") if default is not None else ""
    from docx.table import Table as DocxTable

    from .tables import docx_table, is_table_caption, to_markdown

    lines: list[str] = []
    size = 0
    for number, para in enumerate(document.iter_inner_content()):
        if number % 256 == 0:
            budget.check()
        if isinstance(para, DocxTable):  # a table in its place, with the caption above it
            caption = lines.pop().strip() if lines and is_table_caption(lines[-1].strip()) else ""
            table = docx_table(para, caption)
            if table is not None:
                lines.append(to_markdown(table))
                size += len(lines[-1])
                check_text(size, 0, limits)
            continue
        text = " ".join(para.text.split())
        if not text:
            continue
        style = styles.get(para._p.style, default_name).lower()
        level = re.match(r"heading (\d)", style)
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
        size += len(lines[-1])
        check_text(size, 0, limits)
    return meta, [(None, "\n".join(lines))]


def _page_progress(budget: Budget, on_page=None):
    """Per page: the parse budget is checked, then progress reported."""

    def page_done(done: int, total: int) -> None:
        budget.check()
        if on_page:
            on_page(done, total)

    return page_done


def _load_pdf(data: bytes, budget: Budget, limits: Limits, on_page=None,
              notes: list[str] | None = None) -> tuple[dict, list[tuple[int | None, str, str | None]]]:
    from .ocr import OCR_MARK
    from .pdf import PdfError, extract_pdf

    try:
        content = extract_pdf(data, _page_progress(budget, on_page))
    except PdfError as exc:
        raise UnreadableFile(str(exc)) from exc
    pages = [(p.number, p.text, f"{p.label} ({OCR_MARK})" if p.ocr else p.label) for p in content.pages]
    if not any(text.strip() for _, text, _ in pages):
        reason = "; ".join(content.notes) or "no page shows text or a scan"
        raise UnreadableFile(f"PDF has no text layer ({reason})")
    if notes is not None:
        notes.extend(content.notes)
    return content.meta, pages


def _load_image(data: bytes, budget: Budget, limits: Limits, on_page=None,
                notes: list[str] | None = None) -> tuple[dict, list[tuple[int | None, str, str | None]]]:
    from .ocr import OCR_MARK, OcrUnavailable, image_frames, ocr_images, page_list
    from .pdf import ocr_page_texts

    try:
        frames = image_frames(data)
        results = ocr_images(frames, _page_progress(budget, on_page))
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


def not_regular(mode: int) -> str | None:
    """Why a file with this st_mode is not read (a folder, FIFO, socket or device), or None."""
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a folder" if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "something else"
    )
    return f"not a regular file but {kind}"


def _size_problem(suffix: str, size: int) -> str | None:
    if size > MAX_FILE_BYTES:
        return f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB"
    if suffix in TEXT_SUFFIXES and size > MAX_TEXT_BYTES:
        return f"text file is larger than {MAX_TEXT_BYTES // (1024 * 1024)} MB; split it into smaller files"
    return None


def read_source(path: Path) -> bytes:
    """The raw bytes of a supported regular file; raise UnreadableFile with the reason to skip it.

    Devices, FIFOs and sockets are refused before they are opened (a FIFO would block, /dev/zero
    never ends), and again on the opened descriptor, so a file swapped in between is caught too."""
    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        raise UnreadableFile(f"unsupported file type '{suffix or path.name}'")
    try:
        problem = not_regular(os.stat(path).st_mode)
        if problem:
            raise UnreadableFile(problem)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            problem = not_regular(info.st_mode) or _size_problem(suffix, info.st_size)
            if problem:
                raise UnreadableFile(problem)
            data = fh.read(MAX_FILE_BYTES + 1)
        problem = _size_problem(suffix, len(data))
        if problem:
            raise UnreadableFile(problem)
    except OSError as exc:
        raise UnreadableFile(f"cannot read file ({exc.strerror or exc})") from exc
    check_content(path.name, data)
    return data


def check_content(name: str, data: bytes) -> None:
    """Raise UnreadableFile when `data` is empty or does not match the file name's type."""
    suffix = Path(name).suffix.lower()
    if suffix not in _LOADERS:
        raise UnreadableFile(f"unsupported file type '{suffix or name}'")
    problem = _size_problem(suffix, len(data))
    if problem:
        raise UnreadableFile(problem)
    if not data.strip():
        raise UnreadableFile("empty file")
    mismatch = _sniff_mismatch(suffix, data)
    if mismatch:
        raise UnreadableFile(mismatch)


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
    limits: Limits | None = None,
) -> LoadedFile:
    """Load one file into Documents; raise UnreadableFile with the reason to skip it.

    `data` is the file's bytes when the caller has read them already (`read_source`);
    `on_page(done, total)` reports PDF pages as they are read; `identity` is the document's
    source and path (default: the file name in the corpus source). Parsing stays within
    `limits` (time, memory, characters, word length); metadata fields that do not fit
    are dropped with a warning in `LoadedFile.warnings`."""
    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        raise UnreadableFile(f"unsupported file type '{suffix or path.name}'")
    if data is None:
        data = read_source(path)
    limits = limits or Limits()
    budget = limits.budget()
    notes: list[str] = []
    try:
        if suffix in _PAGED:
            meta, pdf_parts = _LOADERS[suffix](data, budget, limits, on_page, notes)
            parts = [(page, cap_words(text, limits.max_word_chars), label) for page, text, label in pdf_parts]
            check_text(sum(len(text) for _, text, _ in parts), max((p or 0 for p, _, _ in parts), default=0), limits)
        else:
            meta, raw_parts = _LOADERS[suffix](data, budget, limits)
            raw_parts = [(page, cap_words(text, limits.max_word_chars)) for page, text in raw_parts]
            check_text(sum(len(text) for _, text in raw_parts), 0, limits)
            parts = [(page, clean_text(text), None) for page, text in raw_parts]
        budget.check()
    except LimitExceeded as exc:
        raise UnreadableFile(str(exc)) from exc
    if not any(text.strip() for _, text, _ in parts):
        raise UnreadableFile("no text found")

    doc_id = (identity or DocIdentity(CORPUS_SOURCE, path.name)).doc_id
    extra = (manifest or {}).get(doc_id_for(path), {})
    own, warnings = validate_metadata(meta, path.name)
    given, manifest_warnings = validate_metadata(extra, f"{path.name} (in {MANIFEST_NAME})")
    warnings += manifest_warnings
    for warning in warnings:
        log.info("%s", warning)
    merged = {**own, **given}
    heading = (_first_heading(parts[0][1]) or "")[:300]
    title = merged.get("title") or heading or path.stem.replace("_", " ").replace("-", " ")
    kind = merged.get("kind") or guess_kind(path.name)
    base = {
        "doc_id": doc_id,
        "title": title,
        "kind": kind,
        "year": merged.get("year"),
        "publisher": str(merged.get("publisher") or ""),
        "url": str(merged.get("url") or ""),
        "source": str(path),
    }
    documents = [
        Document(page_content=text, metadata={**base, "page": page, "page_label": label if label else (str(page) if page else None)})
        for page, text, label in parts
        if text.strip()
    ]
    return LoadedFile(
        path=path, doc_id=doc_id, content_hash=content_hash(data, path, manifest), documents=documents,
        warnings=warnings, notes=notes,
    )


def _source_problem(path: Path, base: Path) -> str | None:
    """Why a file found under the folder `base` is not read, or None: a symbolic link that
    leaves the folder, a broken link, or anything but a regular file."""
    try:
        if path.is_symlink():
            target = path.resolve(strict=True)
            if target != base and base not in target.parents:
                return "symbolic link to a file outside the source folder"
        return not_regular(os.stat(path).st_mode)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        if path.is_symlink():
            return "broken symbolic link"
        return f"cannot read file ({getattr(exc, 'strerror', None) or exc})"


def discover(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand folders into candidate files; return (files, skipped-with-reason).

    Only regular files are read, and from a folder only those inside it: symbolic links
    that leave it, linked folders, devices, FIFOs and sockets are skipped with their reason."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for root in paths:
        if root.is_dir():
            base = root.resolve()
            found: list[Path] = []
            for folder, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in list(dirnames):
                    if (Path(folder) / name).is_symlink():
                        dirnames.remove(name)
                        skipped.append((Path(folder) / name, "symbolic link to a folder; not followed"))
                found += [Path(folder) / n for n in filenames if not n.startswith(".") and n != MANIFEST_NAME]
            for p in sorted(found):
                if p.suffix.lower() not in SUPPORTED_SUFFIXES:
                    skipped.append((p, f"unsupported file type '{p.suffix.lower() or p.name}'"))
                elif problem := _source_problem(p, base):
                    skipped.append((p, problem))
                else:
                    files.append(p)
        elif os.path.lexists(root):
            try:
                problem = not_regular(os.stat(root).st_mode)
            except OSError as exc:
                problem = f"cannot read file ({exc.strerror or exc})"
            if problem:
                skipped.append((root, problem))
            else:
                files.append(root)
        else:
            skipped.append((root, "no such file or folder"))
    return files, skipped
