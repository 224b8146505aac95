"""Question cost against one query embedding, in one process over an existing index.

Times, question by question and alternately, `encode([question])` alone and the whole
`Assistant.ask` (condensing, retrieval, reader, refusal, composition) over the questions of
an eval file, and prints the p50/p95 of each and their ratio. A ratio from one run, so the
machine's load weighs on both alike (`rag bench` does the same at its real scale with a fresh
ingest; this reuses an index that is already there).

    RAG_CORPUS_DIR=evals/realdocs/dev RAG_INDEX_DIR=.rag-fit/... \\
        PYTHONPATH=src python evals/ask_ratio.py evals/real-dev.jsonl
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
    assistant = Assistant(settings, Index(settings).open(), chat_model=None)
    embeddings = assistant.index.embeddings
    questions = [c.user_input for c in load_dataset(Path(dataset))]
    for q in questions[:5]:  # warm-up: model, BM25, stored lines, refusal and reader models
        assistant.ask(q)
    embed, ask = [], []
    for q in questions:
        start = time.perf_counter()
        embeddings.encode([q], embeddings.query_prefix)
        embed.append(time.perf_counter() - start)
        start = time.perf_counter()
        assistant.ask(q)
        ask.append(time.perf_counter() - start)

    def p(values, q):
        return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000

    print(f"{len(questions)} questions; embed p50 {p(embed, 50):.1f} ms p95 {p(embed, 95):.1f} ms; "
          f"ask p50 {p(ask, 50):.1f} ms p95 {p(ask, 95):.1f} ms; "
          f"ask/embed p50 {p(ask, 50) / p(embed, 50):.2f}, p95 {p(ask, 95) / p(embed, 95):.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
