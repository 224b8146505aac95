"""Where the line holding an expected fact ranks among the candidate lines (TUNING splits only).

Shows what limits fact recall once the right passage is retrieved: for each tuning file, the
share of facts whose line is ranked within the top 1/2/3/5/10 of the top passages' lines by the
answerer's score, by the question-line cosine alone and by IDF word overlap alone. A fact
spread over several lines, or in no retrieved passage, counts as not found.

    HF_HUB_OFFLINE=1 .venv/bin/python evals/line_ranks.py \\
        evals/tune.jsonl=corpus evals/tune-users.jsonl=corpus \\
        evals/real-tune.jsonl=evals/realdocs/tune evals/real-tune-users.jsonl=evals/realdocs/tune
"""

from __future__ import annotations

import sys
from pathlib import Path

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
RANKINGS = {
    "score": lambda c: c.score,
    "cosine": lambda c: c.similarity,
    "overlap": lambda c: (c.overlap, c.similarity),
}


def main(argv: list[str]) -> None:
    pairs = [(Path(d), Path(c)) for d, _, c in (arg.partition("=") for arg in argv)]
    ranks: dict[str, dict[str, list[int | None]]] = {}
    for name, assistant, a, focus, case in analyses(pairs):
        candidates = assistant.extractive.select(a.condensed, a.passages, a.vector, focus).candidates if a.passages else []
        per_file = ranks.setdefault(name, {key: [] for key in RANKINGS})
        for fact in case.facts:
            holding = [i for i, c in enumerate(candidates) if fact_in(fact, c.text)]
            for key, by in RANKINGS.items():
                order = sorted(range(len(candidates)), key=lambda i: by(candidates[i]), reverse=True)
                per_file[key].append(min((order.index(i) for i in holding), default=None))
    print("share of facts whose line ranks within the top n (" + ", ".join(f"@{n}" for n in CUTOFFS) + ")")
    for name, per_file in ranks.items():
        print(f"{name} ({len(per_file['score'])} facts)")
        for key, found in per_file.items():
            shares = [sum(r is not None and r < n for r in found) / len(found) for n in CUTOFFS]
            print(f"  {key:8s}" + "".join(f"  @{n}: {share:.2f}" for n, share in zip(CUTOFFS, shares)))


if __name__ == "__main__":
    main(sys.argv[1:])
