"""Measure PDF ingestion quality on real PDFs (not part of the test suite).

Runs the project's own loader and chunker (whatever `rag` is on PYTHONPATH, so the same
script measures an older checkout too) and reports per file and in total:

- pages, words per page, chunks
- chunks holding a running header/footer line (recurring top/bottom page lines, found
  independently with pypdfium2)
- chunks that are contents-page entries (three or more dot-leader lines)
- glued words: letter runs longer than 35 characters outside URLs/paths
- line-break hyphen splits: "com- puter" inside a chunk (not "onderwijs- en")
- mid-page bookmarks: how many have a chunk on their page whose section ends with the
  bookmark's title, and on how many pages the text above the bookmark still carries the
  previous heading (the page's first chunk does not end with the mid-page heading)
- parse+clean seconds per 100 pages
- with --ingest: a full ingest into a temp index and an unchanged re-ingest (seconds)

Usage:
    PYTHONPATH=src HF_HUB_OFFLINE=1 python evals/pdf_quality.py /work/realdocs/dev/*.pdf /work/realdocs/tune/*.pdf [--ingest] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

_DOT_LEADER = re.compile(r"(?:\.\s?){4,}\s*\d+")
_GLUED = re.compile(r"[^\W\d_]{36,}")
_SPLIT = re.compile(r"\b([^\W\d_]+)- ([^\W\d_]+)\b")
_KEEP_NEXT = {"en", "of", "tot", "noch", "and", "or", "to"}


def header_patterns(path: Path) -> list[re.Pattern]:
    """Regexes for running header/footer lines (top/bottom 2 lines recurring on >= 20% of pages)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    counts: Counter[str] = Counter()
    for index in range(len(pdf)):
        lines = [ln.strip() for ln in re.split(r"\r\n|\n", pdf[index].get_textpage().get_text_range()) if ln.strip()]
        keys = {re.sub(r"\d+", "#", " ".join(ln.split())) for ln in lines[:2] + lines[-2:]}
        counts.update(keys)
    threshold = max(3, int(0.2 * len(pdf)))
    patterns = []
    for key, n in counts.items():
        if n < threshold or len(re.findall(r"[^\W\d_]{3,}", key)) < 2:
            continue
        parts = [re.escape(p).replace("\\#", r"[\divxlc]+").replace("#", r"[\divxlc]+") for p in key.split()]
        patterns.append(re.compile(r"\s*".join(parts)))
    return patterns


def outline_midpage(path: Path) -> dict[int, list[str]]:
    """1-based page -> titles of bookmarks whose destination is below the top fifth of the page."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    marks: dict[int, list[str]] = {}
    for item in pdf.get_toc(max_depth=8):
        dest = item.get_dest()
        if dest is None or dest.get_index() is None:
            continue
        _, pos = dest.get_view()
        height = pdf.get_page_size(dest.get_index())[1]
        if len(pos) >= 2 and pos[1] and pos[1] < 0.8 * height:
            marks.setdefault(dest.get_index() + 1, []).append(" ".join(item.get_title().split()))
    return marks


def measure_file(path: Path) -> dict:
    """Quality numbers for one PDF through the loader and chunker on PYTHONPATH."""
    from rag.chunking import PATH_SEPARATOR, chunk_documents
    from rag.loaders import load_file

    started = time.perf_counter()
    loaded = load_file(path)
    parse_seconds = time.perf_counter() - started
    chunks = chunk_documents(loaded.documents)
    import pypdfium2 as pdfium

    pages = len(pdfium.PdfDocument(str(path)))
    words = sum(len(d.page_content.split()) for d in loaded.documents)
    headers = header_patterns(path)
    header_chunks = sum(1 for c in chunks if any(p.search(" ".join(c.text.split())) for p in headers))
    contents_chunks = sum(1 for c in chunks if len(_DOT_LEADER.findall(c.text)) >= 3)
    glued = [w for c in chunks for tok in c.text.split() if not re.search(r"[/\\_@]|://|www\.", tok)
             for w in _GLUED.findall(tok)]
    splits = [m.group(0) for c in chunks for m in _SPLIT.finditer(c.text)
              if m.group(2).casefold() not in _KEEP_NEXT and m.group(1)[0].islower()]
    mid = outline_midpage(path)
    found = above_ok = pages_checked = 0
    total_marks = sum(len(v) for v in mid.values())
    for page, titles in mid.items():
        on_page = [c for c in chunks if c.page == page]
        lasts = [c.section.split(PATH_SEPARATOR)[-1].casefold() for c in on_page]
        found += sum(1 for t in titles if t.casefold() in lasts)
        if on_page:
            pages_checked += 1
            above_ok += lasts[0] != titles[0].casefold()
    return {
        "file": path.name,
        "pages": pages,
        "words_per_page": round(words / max(pages, 1), 1),
        "chunks": len(chunks),
        "header_chunks": header_chunks,
        "contents_chunks": contents_chunks,
        "glued_words": len(glued),
        "glued_examples": glued[:3],
        "hyphen_splits": len(splits),
        "hyphen_examples": splits[:5],
        "midpage_bookmarks": total_marks,
        "midpage_heading_found": found,
        "midpage_pages": pages_checked,
        "midpage_text_above_keeps_previous": above_ok,
        "parse_seconds": round(parse_seconds, 3),
    }


def measure_ingest(paths: list[Path]) -> dict:
    """Full ingest of the PDFs into a temp index, then an unchanged re-ingest."""
    from rag.config import Settings
    from rag.store import Index

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for p in paths:
            shutil.copy(p, corpus / p.name)
        settings = Settings(corpus_dir=corpus, index_dir=Path(tmp) / "index", chroma_url=None)
        index = Index(settings)
        index.embeddings  # load the model outside the timing
        first = index.ingest()
        second = index.ingest()
        index.close()
    return {
        "full_seconds": round(first.seconds, 2),
        "chunks": first.chunks_total,
        "unchanged_seconds": round(second.seconds, 3),
        "unchanged_ratio": round(second.seconds / max(first.seconds, 1e-9), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdfs", nargs="+", type=Path)
    parser.add_argument("--ingest", action="store_true", help="Also time a full and an unchanged re-ingest.")
    parser.add_argument("--json", type=Path, help="Write the numbers as JSON here.")
    args = parser.parse_args(argv)
    rows = [measure_file(p) for p in args.pdfs]
    keys = ["pages", "chunks", "header_chunks", "contents_chunks", "glued_words", "hyphen_splits",
            "midpage_bookmarks", "midpage_heading_found", "midpage_pages", "midpage_text_above_keeps_previous"]
    total = {k: sum(r[k] for r in rows) for k in keys}
    pages = total["pages"]
    total["words_per_page"] = round(sum(r["words_per_page"] * r["pages"] for r in rows) / max(pages, 1), 1)
    total["parse_seconds_per_100_pages"] = round(sum(r["parse_seconds"] for r in rows) / max(pages, 1) * 100, 3)
    result = {"files": rows, "total": total}
    if args.ingest:
        result["ingest"] = measure_ingest(args.pdfs)
    for r in rows:
        print(f"{r['file']}: " + ", ".join(f"{k}={r[k]}" for k in ["pages", "words_per_page"] + keys[1:] + ["parse_seconds"]))
        if r["glued_examples"] or r["hyphen_examples"]:
            print(f"    glued e.g. {r['glued_examples']}  splits e.g. {r['hyphen_examples']}")
    print("TOTAL: " + ", ".join(f"{k}={v}" for k, v in total.items()))
    if "ingest" in result:
        print("INGEST: " + ", ".join(f"{k}={v}" for k, v in result["ingest"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
