"""Where the line holding an expected fact ranks among the candidate lines (TUNING splits only).

Shows what limits fact recall once the right passage is retrieved: for each tuning file, the
share of facts whose line is ranked within the top 1/2/3/5/10 of the top passages' lines by the
answerer's score, by the hand-set score it replaced, by the question-line cosine alone and
by IDF word overlap alone. A fact
spread over several lines, or in no retrieved passage, counts as not found.

    HF_HUB_OFFLINE=1 .venv/bin/python evals/line_ranks.py \\
        evals/tune.jsonl=corpus evals/tune-users.jsonl=corpus \\
        evals/real-tune.jsonl=evals/realdocs/tune evals/real-tune-users.jsonl=evals/realdocs/tune
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rag.answering import reader
from rag.answering.questions import is_instruction
from rag.answering.tuning import tuning_assistant
from rag.config import Settings
from rag.evaluation import fact_in, load_dataset

CUTOFFS = (1, 2, 3, 5, 10)


def analyses(pairs: list[tuple[Path, Path]]):
    """(dataset name, assistant, analysis, focus words, case) for every answerable tuning case."""
    out = []
    for dataset, corpus in pairs:
        assistant = tuning_assistant(corpus, Settings(), Path(".rag-fit"))
        for case in load_dataset(dataset):
            if case.answerable and case.facts and not is_instruction(case.user_input):
                _, focus = assistant.standalone(case.user_input, case.history)
                out.append((dataset.name, assistant, assistant.analyse(case.user_input, case.history), focus, case))
    return out


def hand_weights(candidates, matrix: np.ndarray) -> list[float]:
    """The hand-set line score the learned reader replaced (commit f45d078), from its features."""
    column = {name: i for i, name in enumerate(reader.FEATURES)}
    passage_rank = 1.0 / matrix[:, column["passage_rank"]] - 1.0
    number = matrix[:, column["number_match"]]
    score = 0.1 * matrix[:, column["sim_from_top"]] + 0.5 * matrix[:, column["overlap"]] + 0.1 * number
    score -= 0.02 * passage_rank
    fragment = np.array([len(c.text) < 15 for c in candidates]) & (number == 0)
    return list(score - 0.3 * fragment)


# Each ranking gives every candidate a sort key, from the candidates and the reader's features.
RANKINGS = {
    "score": lambda cs, m: [c.score for c in cs],
    "hand": hand_weights,
    "cosine": lambda cs, m: [c.similarity for c in cs],
    "overlap": lambda cs, m: [(c.overlap, c.similarity) for c in cs],
}


def main(argv: list[str]) -> None:
    pairs = [(Path(d), Path(c)) for d, _, c in (arg.partition("=") for arg in argv)]
    ranks: dict[str, dict[str, list[int | None]]] = {}
    for name, assistant, a, focus, case in analyses(pairs):
        selection = assistant.extractive.select(a.condensed, a.passages, a.vector, focus) if a.passages else None
        candidates = selection.candidates if selection else []
        per_file = ranks.setdefault(name, {key: [] for key in RANKINGS})
        for fact in case.facts:
            holding = [i for i, c in enumerate(candidates) if fact_in(fact, c.text)]
            for key, by in RANKINGS.items():
                keys = by(candidates, selection.features) if candidates else []
                order = sorted(range(len(candidates)), key=lambda i: keys[i], reverse=True)
                per_file[key].append(min((order.index(i) for i in holding), default=None))
    print("share of facts whose line ranks within the top n (" + ", ".join(f"@{n}" for n in CUTOFFS) + ")")
    for name, per_file in ranks.items():
        print(f"{name} ({len(per_file['score'])} facts)")
        for key, found in per_file.items():
            shares = [sum(r is not None and r < n for r in found) / len(found) for n in CUTOFFS]
            print(f"  {key:8s}" + "".join(f"  @{n}: {share:.2f}" for n, share in zip(CUTOFFS, shares)))


if __name__ == "__main__":
    main(sys.argv[1:])
