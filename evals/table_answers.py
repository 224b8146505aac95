"""How an eval run answered the questions whose facts sit in table rows.

Reads the JSON of `rag eval --json` and the documents of its split. A table question is an
answerable case with a fact inside a table row line of a reference document (`doc_lines.py`
prints those lines). It reports fact recall over the table questions, the table row lines the
answers quote, and whether every quoted row line names its row (a label) and each of its cells
(a column header), which is what makes a quoted row readable on its own.

    PYTHONPATH=src python evals/table_answers.py evals/reports/tables-scans-dev.json --docs evals/tables-scans
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from doc_lines import document_lines

from rag.evaluation import fact_in
from rag.tables import parse_row, table_blocks

_MARKER = re.compile(r"\s*\[\d+\]")


def table_row_lines(lines: list[str]) -> list[str]:
    """The lines of a document that table_blocks reads as rows of a table."""
    rows: list[str] = []
    start = 0
    for kind, content in table_blocks("\n".join(lines)):
        size = len(content.split("\n")) if kind == "text" else len(content[1])
        if kind == "table":
            rows.extend(lines[start : start + size])
        start += size
    return rows


def names_row_and_columns(line: str) -> bool:
    """A row line with a label and a header for every cell."""
    parsed = parse_row(line)
    return parsed is not None and bool(parsed[0]) and all(head and value for head, value in parsed[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the JSON written by `rag eval --json`")
    parser.add_argument("--docs", type=Path, required=True, help="the corpus folder of the split")
    args = parser.parse_args()

    rows_of = {doc: table_row_lines([text for _, _, text in rows]) for doc, rows in document_lines(args.docs).items()}
    all_rows = {row for rows in rows_of.values() for row in rows}
    cases = json.loads(args.report.read_text(encoding="utf-8"))["cases"]
    table_cases = [c for c in cases if c["answerable"] and any(
        fact_in(f, row) for f in c["facts"] for d in c["reference_doc_ids"] for row in rows_of.get(d, []))]
    found = total = quoted = named = 0
    per_answer: list[int] = []
    for case in table_cases:
        total += len(case["facts"])
        found += sum(fact_in(f, case["response"]) for f in case["facts"])
        answer_lines = [_MARKER.sub("", ln) for ln in case["response"].splitlines()]
        quotes = [row for row in all_rows if any(row in ln for ln in answer_lines)]
        per_answer.append(len(quotes))
        quoted += len(quotes)
        for row in quotes:
            if names_row_and_columns(row):
                named += 1
            else:
                print(f"{case['id']}: quoted row without its row or column names: {row!r}")
        if not all(fact_in(f, case["response"]) for f in case["facts"]):
            print(f"{case['id']}: missing fact(s) {case['facts']!r}")
    print(f"table questions: {len(table_cases)} of {len(cases)} cases")
    print(f"fact recall on table questions: {found}/{total} = {found / max(total, 1):.3f}")
    print(f"quoted table row lines: {quoted}, naming their row and every column: {named}")
    if per_answer:
        print(f"row lines quoted per answer: mean {sum(per_answer) / len(per_answer):.2f}, max {max(per_answer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
