"""Per-question cost of the generation check (rag.store: one small Chroma get before a question),
against the whole `Assistant.ask`, in one process over an existing index.

Alternately, question by question: the check forced (`Index.refresh(force=True)`, which reads the
`<name>-meta` record; at most once a second in normal use) and `Assistant.ask`. Prints the p50 of
each and their ratio (one run: the machine's load weighs on both alike). Works embedded or, with
RAG_CHROMA_URL set, against a `chroma run` server.

    RAG_INDEX_DIR=.rag PYTHONPATH=src python evals/generation_check.py evals/dev.jsonl
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from rag.answering import Assistant
from rag.config import Settings
from rag.evaluation import load_dataset
from rag.store import Index


def main(dataset: str) -> None:
    settings = Settings()
    index = Index(settings).open()
    assistant = Assistant(settings, index, chat_model=None)
    questions = [c.user_input for c in load_dataset(Path(dataset))]
    for q in questions[:5]:  # warm-up: model, BM25, stored lines, refusal and reader models
        assistant.ask(q)
    check, ask = [], []
    for q in questions:
        start = time.perf_counter()
        index.refresh(force=True)
        check.append(time.perf_counter() - start)
        start = time.perf_counter()
        assistant.ask(q)
        ask.append(time.perf_counter() - start)
    c50, a50 = statistics.median(check), statistics.median(ask)
    where = settings.chroma_url or "embedded"
    print(f"{len(questions)} questions ({where}): generation check p50 {c50 * 1000:.2f} ms, "
          f"ask p50 {a50 * 1000:.1f} ms, check/ask {c50 / a50:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "evals/dev.jsonl")
