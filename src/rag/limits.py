"""Per-document limits on parsing: time, memory, characters, chunks, answer lines, words and
ZIP expansion, so one hostile file is skipped with its reason instead of stalling an ingest.

The limits on text grow with a document's page count (PDFs), so a 300-page report passes
with room to spare; formats without pages get the base limit. Nesting depth needs no limit:
the HTML walk is iterative and linear, and DOCX XML goes through libxml2, which caps depth.
"""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from dataclasses import dataclass, fields

# Entries smaller than this are not judged by their compression ratio (tiny XML parts of
# repeated markup compress very well and are harmless).
_RATIO_MIN_BYTES = 1 << 20
_MAX_ZIP_ENTRIES = 10_000


class LimitExceeded(Exception):
    """A document goes over a limit; the message says which, and the setting that raises it."""


@dataclass(frozen=True)
class Limits:
    """The limits of one ingest; `from_settings` reads them from the RAG_* settings."""

    parse_seconds: float = 120.0
    parse_memory_mb: int = 1024
    max_doc_chars: int = 1_000_000
    max_chars_per_page: int = 20_000
    max_doc_chunks: int = 2_000
    max_chunks_per_page: int = 20
    max_doc_lines: int = 5_000
    max_lines_per_page: int = 60
    max_word_chars: int = 200
    max_unzipped_mb: int = 100
    max_zip_ratio: int = 100

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        """The limits set in `settings` (a field it lacks keeps its default)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)})

    def chars_for(self, pages: int) -> int:
        """Most characters of text for a document of `pages` pages (0 = no pages)."""
        return self.max_doc_chars + pages * self.max_chars_per_page

    def chunks_for(self, pages: int) -> int:
        """Most chunks for a document of `pages` pages."""
        return self.max_doc_chunks + pages * self.max_chunks_per_page

    def lines_for(self, pages: int) -> int:
        """Most answer lines (each one embedded) for a document of `pages` pages."""
        return self.max_doc_lines + pages * self.max_lines_per_page

    def budget(self) -> "Budget":
        """A fresh time and memory budget for parsing one document."""
        return Budget(self.parse_seconds, self.parse_memory_mb)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Budget:
    """A cooperative deadline and memory budget: parsers call `check()` as they go."""

    def __init__(self, seconds: float, memory_mb: int):
        self.seconds = seconds
        self.memory_mb = memory_mb
        self._deadline = time.monotonic() + seconds
        self._rss0 = _rss_bytes()
        self._calls = 0

    def check(self) -> None:
        """Raise LimitExceeded when the time or memory budget is spent."""
        if time.monotonic() > self._deadline:
            raise LimitExceeded(f"parsing took longer than {self.seconds:g} s (RAG_PARSE_SECONDS)")
        self._calls += 1
        if self._rss0 is not None and self._calls % 64 == 1:
            rss = _rss_bytes()
            if rss is not None and rss - self._rss0 > self.memory_mb * 2**20:
                raise LimitExceeded(f"parsing needed more than {self.memory_mb} MB of memory (RAG_PARSE_MEMORY_MB)")


def check_zip(data: bytes, limits: Limits) -> None:
    """Refuse a ZIP (DOCX) whose entries would expand too far, from the sizes in its directory.

    Python's zipfile never returns more than an entry's declared size, so the declared sizes
    bound what a parser can be made to hold."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise LimitExceeded(f"not a valid DOCX file ({exc.__class__.__name__})") from exc
    if len(infos) > _MAX_ZIP_ENTRIES:
        raise LimitExceeded(f"ZIP (DOCX) archive with {len(infos):,} entries (more than {_MAX_ZIP_ENTRIES:,})")
    total = sum(i.file_size for i in infos)
    if total > limits.max_unzipped_mb * 2**20:
        raise LimitExceeded(
            f"ZIP (DOCX) expands to {total / 2**20:,.0f} MB, more than {limits.max_unzipped_mb} MB (RAG_MAX_UNZIPPED_MB)"
        )
    for info in infos:
        if info.file_size > _RATIO_MIN_BYTES and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise LimitExceeded(
                f"ZIP (DOCX) entry {info.filename[:60]!r} is compressed {ratio:,.0f} times, more than "
                f"{limits.max_zip_ratio} (RAG_MAX_ZIP_RATIO): a ZIP bomb?"
            )


def cap_words(text: str, max_chars: int) -> str:
    """Cut every run of non-space characters longer than `max_chars` (no real word or URL
    is that long; a megabyte "word" would otherwise become thousands of chunks)."""
    pattern = re.compile(r"(?<!\S)\S{%d,}" % (max_chars + 1))
    return pattern.sub(lambda m: m.group()[:max_chars] + "…", text)


def check_text(chars: int, pages: int, limits: Limits) -> None:
    """Refuse a document with more characters of text than its limit."""
    limit = limits.chars_for(pages)
    if chars > limit:
        raise LimitExceeded(
            f"too much text: {chars:,} characters, more than the limit of {limit:,} "
            "(RAG_MAX_DOC_CHARS, RAG_MAX_CHARS_PER_PAGE)"
        )


def check_chunks(chunks: list, pages: int, limits: Limits) -> None:
    """Refuse a document with more chunks or answer lines than its limit (each is embedded)."""
    from .lines import split_lines

    limit = limits.chunks_for(pages)
    if len(chunks) > limit:
        raise LimitExceeded(
            f"too many chunks: {len(chunks):,}, more than the limit of {limit:,} "
            "(RAG_MAX_DOC_CHUNKS, RAG_MAX_CHUNKS_PER_PAGE)"
        )
    limit = limits.lines_for(pages)
    lines = 0
    for chunk in chunks:
        lines += len(split_lines(chunk.text))
        if lines > limit:
            raise LimitExceeded(
                f"too many answer lines: more than {limit:,} to embed (RAG_MAX_DOC_LINES, RAG_MAX_LINES_PER_PAGE); "
                "split the document or raise the limit"
            )


def page_count(documents: list) -> int:
    """The number of pages of a loaded document (0 for formats without pages)."""
    return max((d.metadata.get("page") or 0 for d in documents), default=0)
