"""Other ways to rank answer lines, tried against the shipped reader (TUNING splits only).

Every tuning question is analysed as `rag fit-reader` does (condensed question, retrieval,
candidate lines and their features), and each trial is scored by out-of-fold recall@1 with
each tuning file held out in turn (the figure `rag fit-reader` prints). Trials:

- the shipped conditional logit (linear, penalty 10) and with the tanh layer;
- gradient-boosted trees (scikit-learn) on the same features, pointwise;
- extra passage features: the passage's dense and BM25 scores and ranks, its coverage of the
  asked words, its best line's cosine, a line that repeats the document title, the
  neighbouring lines' word overlap;
- the question and line vectors multiplied elementwise as 384 more features (a learned
  weighting of e5's dimensions);
- where the positive line's passage ranks, and recall@1 by that rank.

    HF_HUB_OFFLINE=1 .venv/bin/python evals/reader_trials.py --cache /tmp/reader-trials.pkl \\
        evals/tune.jsonl=corpus evals/tune-users.jsonl=corpus ...   # the Makefile's TUNING list

The first run collects (~5 minutes on 2 cores) and caches to --cache; later runs read it.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

import numpy as np

from rag.answering import reader_fit
from rag.answering.extractive import asked_words, weighted_coverage
from rag.config import Settings
from rag.lexical import fold_accents

PASSAGE_FEATURES = ("p_dense", "p_lexical", "p_dense_rank", "p_lexical_rank", "p_overlap", "p_best_sim",
                    "title_like", "neighbour_overlap")


def collect(pairs: list[tuple[Path, Path]]) -> list[dict]:
    """Every answerable tuning question's candidates, features, labels, passages and vectors."""
    out = []
    for dataset, corpus in pairs:
        for a in reader_fit.analysed_cases(dataset, corpus, Settings(), Path(".rag-fit"), with_vectors=True):
            out.append({
                "dataset": dataset.name, "id": a.case.id, "question": a.question, "facts": a.case.facts,
                "candidates": a.candidates, "matrix": a.matrix, "labels": a.labels,
                "passages": [(p.title, p.dense_score, p.lexical_score, p.dense_rank, p.lexical_rank) for p in a.passages],
                "question_vector": np.asarray(a.vector, dtype=np.float32),
                "line_vectors": a.line_vectors.astype(np.float32),
            })
        logging.info("%s: %d questions so far", dataset, len(out))
    return out


def passage_features(row: dict) -> np.ndarray:
    """PASSAGE_FEATURES for every candidate line of one question."""
    candidates, passages = row["candidates"], row["passages"]
    weights = {w: 1.0 for w in asked_words(row["question"])}
    vocabulary: dict[int, set] = {}
    for c in candidates:
        vocabulary.setdefault(c.passage_index, set()).update(c.words)
    dense = np.array([np.nan if p[1] is None else p[1] for p in passages], dtype=float)
    lexical = np.array([np.nan if p[2] is None else p[2] for p in passages], dtype=float)
    dense_top = np.nanmax(dense) if np.isfinite(dense).any() else 0.0
    lexical_top = np.nanmax(lexical) if np.isfinite(lexical).any() else 1.0
    sims = np.array([c.similarity for c in candidates])
    best: dict[int, float] = {}
    for c in candidates:
        best[c.passage_index] = max(best.get(c.passage_index, -9.0), c.similarity)
    spread = max(float(sims.std()), 1e-3)
    line_overlap = [weighted_coverage(weights, c.line_words) if weights else 0.0 for c in candidates]
    rows = []
    for i, c in enumerate(candidates):
        title, _, _, dense_rank, lexical_rank = passages[c.passage_index]
        folded_title, folded = fold_accents(title), fold_accents(c.text).strip(" .:")
        around = [line_overlap[j] for j in (i - 1, i + 1)
                  if 0 <= j < len(candidates) and candidates[j].passage_index == c.passage_index]
        d, lx = dense[c.passage_index], lexical[c.passage_index]
        rows.append([
            (d - dense_top) * 10 if np.isfinite(d) else -1.0,
            lx / lexical_top if np.isfinite(lx) and lexical_top > 0 else 0.0,
            1 / (1 + dense_rank) if dense_rank is not None else 0.0,
            1 / (1 + lexical_rank) if lexical_rank is not None else 0.0,
            weighted_coverage(weights, vocabulary[c.passage_index]) if weights else 0.0,
            (best[c.passage_index] - sims.max()) / spread,
            float(len(folded) > 3 and (folded in folded_title or folded_title in folded)),
            max(around, default=0.0),
        ])
    return np.array(rows, dtype=np.float32)


def questions(rows: list[dict], extra=None) -> list[reader_fit.Question]:
    """reader_fit Questions, with `extra(row)` columns appended to the feature matrix."""
    out = []
    for r in rows:
        matrix = np.hstack([r["matrix"], extra(r)]) if extra else r["matrix"]
        out.append(reader_fit.Question(r["dataset"], r["id"], r["question"], r["facts"], r["candidates"], matrix,
                                       r["labels"]))
    return out


def logit_recall(qs: list[reader_fit.Question], hidden: int = 0, penalty: float = 10.0) -> float:
    """Out-of-fold recall@1 of the conditional logit on these questions' features."""
    reader_fit._out_of_fold(qs, hidden, penalty)
    return reader_fit.recall_at_1(qs)


def trees_recall(rows: list[dict]) -> float:
    """Out-of-fold recall@1 of gradient-boosted trees (pointwise) on the shipped features."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    hits = []
    for held in sorted({r["dataset"] for r in rows}):
        train = [r for r in rows if r["dataset"] != held and r["labels"].any()]
        model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                               min_samples_leaf=40, random_state=0)
        model.fit(np.vstack([r["matrix"] for r in train]), np.concatenate([r["labels"] for r in train]))
        hits += [bool(r["labels"][int(np.argmax(model.decision_function(r["matrix"])))])
                 for r in rows if r["dataset"] == held]
    return float(np.mean(hits))


def by_answer_passage(rows: list[dict], qs: list[reader_fit.Question]) -> None:
    """How often the answer line's passage is each rank, and recall@1 there (out-of-fold scores)."""
    found: dict[int, list[bool]] = {}
    for r, q in zip(rows, qs):
        if r["labels"].any():
            rank = min(c.passage_index for c, hit in zip(r["candidates"], r["labels"]) if hit)
            found.setdefault(rank, []).append(bool(r["labels"][int(np.argmax(q.scores))]))
    for rank in sorted(found):
        print(f"  answer line in passage {rank + 1}: {len(found[rank])} questions, recall@1 {np.mean(found[rank]):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("pairs", nargs="*", help="DATASET=CORPUS tuning pairs (needed when the cache is missing)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cache.exists():
        rows = pickle.loads(args.cache.read_bytes())
    else:
        rows = collect([(Path(d), Path(c)) for d, c in (p.split("=", 1) for p in args.pairs)])
        args.cache.write_bytes(pickle.dumps(rows))
    print(f"{len(rows)} questions, {sum(int(r['labels'].sum()) for r in rows)} positive lines")
    shipped = questions(rows)
    print(f"shipped features, linear:        {logit_recall(shipped):.4f}")
    by_answer_passage(rows, shipped)
    print(f"shipped features, tanh layer 8:  {logit_recall(questions(rows), hidden=8):.4f}")
    print(f"gradient-boosted trees:          {trees_recall(rows):.4f}")
    extra = {id(r): passage_features(r) for r in rows}
    print(f"+ all passage features:          {logit_recall(questions(rows, lambda r: extra[id(r)])):.4f}")
    for k, name in enumerate(PASSAGE_FEATURES):
        print(f"+ {name:30s} {logit_recall(questions(rows, lambda r: extra[id(r)][:, [k]])):.4f}")

    def products(r):
        p = r["line_vectors"] * r["question_vector"][None, :]
        return (p - p.mean(axis=0, keepdims=True)) * 20  # what differs between one question's lines

    for penalty in (10.0, 100.0):
        print(f"+ q*line products, penalty {penalty:5.0f}: {logit_recall(questions(rows, products), penalty=penalty):.4f}")


if __name__ == "__main__":
    main()
