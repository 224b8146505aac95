"""Check an eval dataset against its reference documents.

Every fact of every answerable case must occur (``fact_in``) in one of its reference
documents, and within one answer line as the ingest pipeline cuts them (loader, PDF
cleaning, chunking, line cutting: `doc_lines.py` prints them). An extractive answer quotes
whole lines, so a fact spread over two lines may never be quoted verbatim; such facts are
reported too.

    PYTHONPATH=src python evals/check_facts.py evals/dev.jsonl --docs corpus
    PYTHONPATH=src python evals/check_facts.py evals/real-dev.jsonl --docs evals/realdocs/dev
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from doc_lines import document_lines

from rag.evaluation import fact_in, load_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--docs", type=Path, required=True, help="the corpus folder the dataset is asked about")
    args = parser.parse_args()

    cases = load_dataset(args.dataset)
    lines_of = {doc_id: [text for _, _, text in rows] for doc_id, rows in document_lines(args.docs).items()}
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
            if doc_id not in lines_of:
                print(f"{case.id}: no document {doc_id} in {args.docs}")
                problems += 1
            docs.append(lines_of.get(doc_id, []))
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
