"""A cross-encoder line ranker fine-tuned from the bundled e5 weights, against the learned reader.

Two folds by document family (TUNING splits only): `policy` trains on the three Debian manual
families and scores the shipped-corpus and policy-text tuning questions; `docs` the reverse. Both
rankers are fit on the same family and scored on the other one, by recall@1 (the best-ranked line
holds an expected fact). The cross-encoder is e5-small with a one-logit head (word embeddings
frozen), trained with a softmax over one answer line and 7 other lines of the same question: the
first 7 in passage order (`passage`, the lines around the answer) or the reader's 7 best-scored
(`reader`).

    PYTHONPATH=src python evals/cross_encoder_trial.py collect OUT.pkl DATASET=CORPUS ...
    PYTHONPATH=src python evals/cross_encoder_trial.py train OUT.pkl policy|docs WORKDIR [EPOCHS] [LR] [passage|reader]
    PYTHONPATH=src python evals/cross_encoder_trial.py report OUT.pkl policy|docs WORKDIR
    PYTHONPATH=src python evals/cross_encoder_trial.py cost OUT.pkl WORKDIR/policy-model
    PYTHONPATH=src python evals/cross_encoder_trial.py query-side OUT.pkl policy|docs WORKDIR [EPOCHS] [LR]

`query-side` fine-tunes only the query side of e5 against the stored line vectors (which would
need no re-encoding) and prints the held-out cosine recall@1 per epoch. `collect` takes the same DATASET=CORPUS pairs as `make fit` (TUNING in the Makefile); `cost`
exports the trained model to int8 ONNX and times reranking 8 lines, and all of a question's
lines, against one query embedding of the default encoder, alternated in one process.
Needs torch and transformers (present after `make install`); nothing here is used by the app.
"""

from __future__ import annotations

import pickle
import random
import sys
import time
from pathlib import Path

import numpy as np

MANUALS = {"reader-aptitude.jsonl", "reader-gimp.jsonl", "reader-lilypond.jsonl"}
MAX_TOKENS = 96
NEGATIVES = 7


def collect(out: Path, pairs: list[str]) -> None:
    """Every answerable tuning question: its condensed text, candidate lines, reader features, labels."""
    from rag.answering import reader
    from rag.answering.reader_fit import analysed_cases
    from rag.config import Settings

    rows = []
    for pair in pairs:
        dataset, corpus = pair.split("=")
        for a in analysed_cases(Path(dataset), Path(corpus), Settings(), Path(".rag-fit"), with_vectors=True):
            rows.append({"line_vectors": a.line_vectors.astype(np.float32), "dataset": Path(dataset).name,
                         "id": a.case.id, "q": a.question, "texts": [c.text for c in a.candidates],
                         "matrix": a.matrix, "reader": reader.scores(a.matrix, reader.load_model()), "labels": a.labels})
    pickle.dump(rows, out.open("wb"))
    print(f"{len(rows)} questions, {sum(int(r['labels'].sum()) for r in rows)} answer lines, "
          f"{sum(len(r['texts']) for r in rows)} candidate lines")


def split(rows: list[dict], fold: str) -> tuple[list[dict], list[dict]]:
    """(train, test): `policy` tests on the non-manual families, `docs` on the manuals."""
    test_manuals = fold == "docs"
    return ([r for r in rows if (r["dataset"] in MANUALS) != test_manuals],
            [r for r in rows if (r["dataset"] in MANUALS) == test_manuals])


def _pairs(tokenizer, question: str, texts: list[str], tensors: str = "pt"):
    return tokenizer(["query: " + question] * len(texts), ["passage: " + t for t in texts],
                     truncation="only_second", max_length=MAX_TOKENS, padding=True, return_tensors=tensors)


def _start(rows_path: Path, fold: str, workdir: Path) -> tuple[Path, list[dict], list[dict]]:
    """Seeded torch on two threads, the bundled e5 as a transformers folder in workdir, and the fold."""
    import torch

    from rag.e5export import main as e5export

    torch.set_num_threads(2)
    random.seed(0)
    torch.manual_seed(0)
    base = workdir / "e5-st"
    if not (base / "model.safetensors").is_file():
        e5export([str(base)])
    return (base, *split(pickle.load(rows_path.open("rb")), fold))


def train(rows_path: Path, fold: str, workdir: Path, epochs: int = 3, lr: float = 6e-5, negatives: str = "passage") -> None:
    """Fine-tune on one family, write the other family's scores and the model to workdir."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base, train_rows, test_rows = _start(rows_path, fold, workdir)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    model.bert.embeddings.word_embeddings.weight.requires_grad = False  # 96M of 118M weights: the bundled ones
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    groups = []
    for r in train_rows:
        others = np.flatnonzero(~r["labels"])
        if negatives == "reader":
            others = others[np.argsort(-r["reader"][others], kind="stable")]
        for p in np.flatnonzero(r["labels"])[:2]:
            groups.append((r["q"], [r["texts"][p]] + [r["texts"][n] for n in others[:NEGATIVES]]))
    steps = epochs * len(groups)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, s / 50) * max(0.0, 1 - s / steps))
    model.train()
    started = time.time()
    for epoch in range(epochs):
        random.shuffle(groups)
        for question, texts in groups:
            logits = model(**_pairs(tokenizer, question, texts)).logits.squeeze(-1)
            loss = torch.nn.functional.cross_entropy(logits[None], torch.zeros(1, dtype=torch.long))
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        print(f"epoch {epoch + 1}/{epochs}: {len(groups)} groups, {time.time() - started:.0f}s", flush=True)
    model.eval()
    scores = {}
    with torch.no_grad():
        for r in test_rows:
            scores[(r["dataset"], r["id"])] = np.concatenate([
                model(**_pairs(tokenizer, r["q"], r["texts"][i : i + 32])).logits.squeeze(-1).numpy()
                for i in range(0, len(r["texts"]), 32)])
    pickle.dump(scores, (workdir / f"{fold}-scores.pkl").open("wb"))
    model.save_pretrained(str(workdir / f"{fold}-model"))
    tokenizer.save_pretrained(str(workdir / f"{fold}-model"))


def _recall_at_1(rows: list[dict], score) -> float:
    return float(np.mean([bool(r["labels"][int(np.argmax(score(r)))]) for r in rows]))


def report(rows_path: Path, fold: str, workdir: Path) -> None:
    """Recall@1 on the held-out family: reader features refit on the training family, cosine, the
    cross-encoder, and both combined (the weight chosen on one half, reported on the other)."""
    from rag import conditional_logit

    train_rows, test_rows = split(pickle.load(rows_path.open("rb")), fold)
    ce = pickle.load((workdir / f"{fold}-scores.pkl").open("rb"))
    groups = [(r["matrix"].astype(float), r["labels"]) for r in train_rows]
    mean, scale = conditional_logit.standardisation([m for m, _ in groups])
    model = conditional_logit.fit(groups, mean, scale, hidden=0, penalty=10.0)

    def features(r):
        return conditional_logit.scores(r["matrix"], model)

    def cross(r):
        return ce[(r["dataset"], r["id"])]

    def z(v):
        return (v - v.mean()) / (v.std() + 1e-9)

    from rag.answering import reader

    cosine = reader.FEATURES.index("sim_from_top")  # highest for the line nearest the question
    print(f"held-out {fold} family: {len(test_rows)} questions, {sum(r['labels'].any() for r in test_rows)} "
          "with an answer line among the candidates")
    print(f"  reader features, fit on the other family  @1 {_recall_at_1(test_rows, features):.3f}")
    print(f"  cosine alone                               @1 {_recall_at_1(test_rows, lambda r: r['matrix'][:, cosine]):.3f}")
    print(f"  cross-encoder                              @1 {_recall_at_1(test_rows, cross):.3f}")
    order = np.random.default_rng(0).permutation(len(test_rows))
    halves = [[test_rows[i] for i in order[: len(order) // 2]], [test_rows[i] for i in order[len(order) // 2 :]]]
    for chose_on, shown_on in ((0, 1), (1, 0)):
        weight = max(np.arange(0, 3.01, 0.25), key=lambda w: _recall_at_1(
            halves[chose_on], lambda r: z(features(r)) + w * z(cross(r))))
        print(f"  features + {weight:.2f} x cross-encoder, half {shown_on + 1}: "
              f"@1 {_recall_at_1(halves[shown_on], lambda r: z(features(r)) + weight * z(cross(r))):.3f} "
              f"(features alone {_recall_at_1(halves[shown_on], features):.3f})")


def cost(rows_path: Path, model_dir: Path, questions: int = 60) -> None:
    """int8 ONNX cross-encoder: ms to score 8 and all candidate lines, against one query embedding."""
    import onnxruntime as ort
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rag.e5onnx import int8_onnx
    from rag.embeddings import get_embeddings

    int8 = model_dir / "ce-int8.onnx"
    if not int8.is_file():
        int8_onnx(AutoModelForSequenceClassification.from_pretrained(str(model_dir)), int8, "logits", {0: "batch"})
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    encoder = get_embeddings("default")
    rows = pickle.load(rows_path.open("rb"))[:questions]

    def rerank(question, texts):
        batch = _pairs(tokenizer, question, texts, tensors="np")
        session.run(None, {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")})

    spent = {"one query embedding": [], "cross-encoder, 8 lines": [], "cross-encoder, all lines": []}
    for r in rows:
        best = [r["texts"][i] for i in np.argsort(-r["reader"])[:8]]
        for name, run in (("one query embedding", lambda: encoder.encode([r["q"]], encoder.query_prefix)),
                          ("cross-encoder, 8 lines", lambda: rerank(r["q"], best)),
                          ("cross-encoder, all lines", lambda: rerank(r["q"], r["texts"]))):
            started = time.perf_counter()
            run()
            spent[name].append(time.perf_counter() - started)
    base = float(np.median(spent["one query embedding"]))
    print(f"int8 cross-encoder {int8.stat().st_size / 1e6:.0f} MB; {len(rows)} questions, "
          f"{np.mean([len(r['texts']) for r in rows]):.1f} candidate lines on average")
    for name, values in spent.items():
        print(f"  {name:26s} p50 {np.median(values) * 1000:6.1f} ms = x{np.median(values) / base:.1f}")


def query_side(rows_path: Path, fold: str, workdir: Path, epochs: int = 4, lr: float = 2e-5) -> None:
    """Fine-tune e5's query side so the question's vector points at its answer line's stored vector."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    base, train_rows, test_rows = _start(rows_path, fold, workdir)
    train_rows = [r for r in train_rows if r["labels"].any()]
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModel.from_pretrained(str(base))
    model.embeddings.word_embeddings.weight.requires_grad = False

    def embed(questions):
        batch = tokenizer(["query: " + q for q in questions], padding=True, truncation=True, max_length=64,
                          return_tensors="pt")
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (model(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def recall(rows):
        model.eval()
        with torch.no_grad():
            vectors = np.vstack([embed([r["q"] for r in rows[i : i + 32]]).numpy() for i in range(0, len(rows), 32)])
        return _recall_at_1([dict(r, v=v) for r, v in zip(rows, vectors)], lambda r: r["line_vectors"] @ r["v"])

    print(f"cosine recall@1 on the held-out family before: {recall(test_rows):.3f}", flush=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    for epoch in range(epochs):
        model.train()
        random.shuffle(train_rows)
        for i in range(0, len(train_rows), 8):
            part = train_rows[i : i + 8]
            loss = 0
            for r, v in zip(part, embed([r["q"] for r in part])):
                logits = torch.from_numpy(r["line_vectors"]) @ v / 0.05
                positive = torch.from_numpy(r["labels"])
                loss = loss - (torch.logsumexp(logits[positive], 0) - torch.logsumexp(logits, 0))
            (loss / len(part)).backward()
            optimizer.step()
            optimizer.zero_grad()
        print(f"epoch {epoch + 1}: held-out {recall(test_rows):.3f}, training family {recall(train_rows):.3f}", flush=True)


def main(argv: list[str]) -> None:
    command, rows = argv[0], Path(argv[1])
    if command == "collect":
        collect(rows, argv[2:])
    elif command == "train":
        train(rows, argv[2], Path(argv[3]), *(int(argv[4]),) if len(argv) > 4 else (),
              *(float(argv[5]),) if len(argv) > 5 else (), *(argv[6],) if len(argv) > 6 else ())
    elif command == "report":
        report(rows, argv[2], Path(argv[3]))
    elif command == "query-side":
        query_side(rows, argv[2], Path(argv[3]), *(int(argv[4]),) if len(argv) > 4 else (),
                   *(float(argv[5]),) if len(argv) > 5 else ())
    elif command == "cost":
        cost(rows, Path(argv[2]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
