"""Grid-search the answer-line scoring weights on TUNING splits only.

Retrieval and vectors do not depend on the weights, so every case is analysed once and
then re-scored per weight setting; the measure is fact recall of the composed answer on
answerable cases (refusal is left out: it has its own model).

    HF_HUB_OFFLINE=1 .venv/bin/python evals/tune_lines.py \
        evals/tune.jsonl=corpus evals/tune-users.jsonl=corpus \
        evals/real-tune.jsonl=evals/realdocs/tune evals/real-tune-users.jsonl=evals/realdocs/tune

Prints the best settings; copy them into src/rag/answering/extractive.py by hand.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from rag.answering import extractive
from rag.answering.assistant import Assistant
from rag.answering.questions import is_instruction
from rag.config import Settings
from rag.evaluation import fact_share, load_dataset
from rag.index import Index

GRID = {
    "SIMILARITY_WEIGHT": [0.02, 0.05, 0.1, 0.2, 0.35, 0.5],
    "OVERLAP_WEIGHT": [0.5],
    "NUMBER_BONUS": [0.0, 0.1, 0.25],
    "MARGIN": [0.1, 0.2, 0.3, 0.45],
    "MAX_LINES": [3, 4],
}


def analyses(pairs: list[tuple[Path, Path]]):
    out = []
    for dataset, corpus in pairs:
        index_dir = Path(".rag-fit") / corpus.resolve().as_posix().strip("/").replace("/", "_")
        settings = Settings().with_overrides(corpus_dir=corpus, index_dir=index_dir, chroma_url=None)
        index = Index(settings)
        index.ingest()
        assistant = Assistant(settings, index.open(), chat_model=None)
        for case in load_dataset(dataset):
            if case.answerable and case.facts and not is_instruction(case.user_input):
                a = assistant.analyse(case.user_input, case.history)
                focus = set(extractive.asked_words(case.user_input)) if a.condensed != case.user_input else set()
                out.append((dataset.name, assistant, a, focus, case))
    return out


def fact_recall(cases) -> tuple[float, dict[str, float], float]:
    """Mean of the per-dataset fact recalls (each split counts alike, whatever its size),
    the per-dataset values and the mean answer length in characters."""
    per: dict[str, list[float]] = {}
    chars = []
    for name, assistant, a, focus, case in cases:
        text = ""
        if a.passages:
            selection = assistant.extractive.select(a.condensed, a.passages, a.vector, focus)
            text, _ = assistant.extractive.compose(selection.chosen, a.passages)
        per.setdefault(name, []).append(fact_share(case.facts, [text]) or 0.0)
        chars.append(len(text))
    means = {name: sum(v) / len(v) for name, v in per.items()}
    return sum(means.values()) / len(means), means, sum(chars) / len(chars)


def main(argv: list[str]) -> None:
    pairs = [(Path(d), Path(c)) for d, _, c in (arg.partition("=") for arg in argv)]
    cases = analyses(pairs)
    def show(recall, means, chars, label):
        split = " ".join(f"{name}={value:.3f}" for name, value in means.items())
        print(f"{recall:.3f} ({split}; {chars:.0f} chars) {label}")

    show(*fact_recall(cases), f"current settings, {len(cases)} answerable tuning cases")
    results = []
    for values in itertools.product(*GRID.values()):
        for name, value in zip(GRID, values):
            setattr(extractive, name, value)
        results.append((*fact_recall(cases), values))
    results.sort(key=lambda r: -r[0])
    for recall, means, chars, values in results[:10]:
        show(recall, means, chars, dict(zip(GRID, values)))


if __name__ == "__main__":
    main(sys.argv[1:])
