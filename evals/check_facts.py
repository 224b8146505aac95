"""Check an eval dataset against its reference documents.

Every fact of every answerable case must occur (``fact_in``) in the text of one of
its reference documents: the Markdown file for the shipped corpus, the pypdfium2 text
(each page's lines joined by spaces) for a PDF. A fact that only occurs across a line
break of the extracted text is reported too: an extractive answer quotes whole lines,
so such a fact may never be quoted verbatim.

    PYTHONPATH=src python evals/check_facts.py evals/dev.jsonl --docs corpus
    PYTHONPATH=src python evals/check_facts.py evals/real-dev.jsonl --docs evals/realdocs/dev
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from rag.evaluation import fact_in, load_dataset


def doc_lines(path: Path) -> list[str]:
    """The lines of one document as extracted (pages concatenated for a PDF)."""
    if path.suffix.lower() == ".pdf":
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(path))
        lines: list[str] = []
        for i in range(len(pdf)):
            text = pdf[i].get_textpage().get_text_range()
            lines.extend(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
            lines.append("")  # page break
        return lines
    return path.read_text(encoding="utf-8").splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--docs", type=Path, required=True, help="folder with <doc id>.md / <doc id>.pdf")
    args = parser.parse_args()

    cases = load_dataset(args.dataset)
    cache: dict[str, list[str]] = {}
    problems = 0
    for case in cases:
        if not case.answerable:
            if case.facts or case.reference_doc_ids:
                print(f"{case.id}: unanswerable case with facts or reference documents")
                problems += 1
            continue
        if not case.facts or not case.reference_doc_ids:
            print(f"{case.id}: answerable case without facts or reference documents")
            problems += 1
        docs: list[list[str]] = []
        for doc_id in case.reference_doc_ids:
            if doc_id not in cache:
                found = [p for p in (args.docs / f"{doc_id}.md", args.docs / f"{doc_id}.pdf") if p.exists()]
                if not found:
                    print(f"{case.id}: no document {doc_id} in {args.docs}")
                    problems += 1
                cache[doc_id] = doc_lines(found[0]) if found else []
            docs.append(cache[doc_id])
        for fact in case.facts:
            if not any(fact_in(fact, " ".join(lines)) for lines in docs):
                print(f"{case.id}: fact {fact!r} not in {', '.join(case.reference_doc_ids)}")
                problems += 1
            elif not any(fact_in(fact, line) for lines in docs for line in lines):
                print(f"{case.id}: fact {fact!r} occurs only across a line break")
                problems += 1

    kinds = Counter("answerable" if c.answerable else "unanswerable" for c in cases)
    kinds["follow-ups"] = sum(1 for c in cases if c.history)
    print(f"{args.dataset}: {len(cases)} cases, {dict(kinds)}, {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
