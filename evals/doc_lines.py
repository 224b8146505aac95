"""The answer lines of each document in a folder, as the assistant sees them.

Runs the ingest pipeline without embedding (loader, PDF cleaning, chunking, line cutting) and
prints every answer line with its document, page and section. This is what an extractive
answer can quote, so eval facts are copied from these lines (and `check_facts.py` checks them
against the same lines).

    PYTHONPATH=src python evals/doc_lines.py evals/realdocs/aptitude > /tmp/aptitude-lines.txt
    PYTHONPATH=src python evals/doc_lines.py corpus --doc factsheet-2021
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rag.chunking import chunk_documents
from rag.config import Settings
from rag.identity import doc_name
from rag.lines import split_lines
from rag.loaders import UnreadableFile, discover, load_file, read_manifest


def document_lines(folder: Path, settings: Settings | None = None) -> dict[str, list[tuple[str, str, str]]]:
    """document name -> [(page label, section, line text)] for every readable file in the folder
    (the name is what eval files use in `reference_doc_ids`: the path in the folder, no suffix)."""
    settings = settings or Settings()
    files, _ = discover([folder])
    manifest = read_manifest(folder)
    out: dict[str, list[tuple[str, str, str]]] = {}
    for path in files:
        try:
            loaded = load_file(path, manifest)
        except UnreadableFile:
            continue
        rows = out.setdefault(doc_name(loaded.doc_id), [])
        for chunk in chunk_documents(loaded.documents, settings.chunk_size, settings.chunk_overlap):
            for line in split_lines(chunk.text):
                rows.append((str(chunk.page_label or chunk.page or ""), chunk.section, line.text))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--doc", action="append", default=[], help="only this document name (repeatable)")
    args = parser.parse_args()
    for doc_id, rows in document_lines(args.folder).items():
        if args.doc and doc_id not in args.doc:
            continue
        print(f"=== {doc_id} ({len(rows)} lines)")
        section = None
        for page, sec, text in rows:
            if sec != section:
                print(f"--- p.{page} {sec}")
                section = sec
            print(f"  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
