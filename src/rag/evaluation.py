"""Answer-quality evals: dataset, runner, metrics, reports, baselines (`rag eval`).

Every case goes through the same `Assistant.ask(question, history)` the app uses.
Metrics per case, then averaged:

- retrieval: doc hit@1 / hit@k and MRR over `reference_doc_ids` (by passage rank),
  context recall = share of facts present in the top-k passages;
- answer: fact recall = share of facts in the answer (0 for a refused answerable
  case), refusal accuracy over all cases (false and missed refusals counted),
  answer length;
- citations (ALCE-style, offline): validity (every [n] points at a shown passage),
  supported sentences (each claim sentence supported by its cited passages: its
  numbers and names occur there and its content words overlap >= SUPPORT_OVERLAP)
  and citation precision (a citation is needed when it alone supports the sentence
  or removing it leaves the sentence unsupported);
- with --judge and an LLM: faithfulness and answer relevance (RAGAS definitions,
  Dutch prompts). A judge failure is "not computed": left out of every average.

Retrieval and fact metrics average over answerable cases, citation metrics over
answered (not refused) cases, refusal accuracy over all cases.

Heavy libraries are imported inside functions so `rag --help` stays fast.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import subprocess
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .citations import names_in, supports  # noqa: F401 - the support rule lives in citations
from .config import MAX_K, Settings
from .errors import RagError
from .identity import matches

log = logging.getLogger(__name__)

DEFAULT_DATASET = Path("evals/tune.jsonl")
TUTORIAL_K = 4  # the LangChain tutorial's similarity_search default

# Summary metrics: name -> (label, averaged over). Order is the table order.
SUMMARY_METRICS: dict[str, tuple[str, str]] = {
    "doc_hit_at_1": ("Doc hit@1", "answerable"),
    "doc_hit_at_k": ("Doc hit@k", "answerable"),
    "mrr": ("MRR (document)", "answerable"),
    "context_recall": ("Context recall (facts in top-k)", "answerable"),
    "fact_recall": ("Fact recall (facts in answer)", "answerable"),
    "refusal_accuracy": ("Refusal accuracy", "all"),
    "correct": ("Correct (every fact, or a right refusal)", "all"),
    "false_refusals": ("False refusals (count)", "answerable"),
    "missed_refusals": ("Missed refusals (count)", "unanswerable"),
    "answer_chars_median": ("Answer length, median chars", "answered"),
    "citation_validity": ("Citation validity", "answered"),
    "supported_sentences": ("Supported sentences (ALCE recall)", "answered"),
    "citation_precision": ("Citation precision (ALCE)", "answered"),
    "faithfulness": ("Faithfulness (LLM judge)", "judged"),
    "answer_relevance": ("Answer relevance (LLM judge)", "judged"),
    "judge_not_computed": ("Judge not computed (count)", "answered"),
    "cases": ("Cases", "all"),
    "answerable_cases": ("Answerable cases", "all"),
}
COUNT_METRICS = {"false_refusals", "missed_refusals", "judge_not_computed", "cases", "answerable_cases"}
LOWER_IS_BETTER = {"false_refusals", "missed_refusals", "answer_chars_median", "judge_not_computed"}


class DatasetError(RagError):
    """The eval dataset is missing or has a malformed line."""

    exit_code = 2


class JudgeError(RagError):
    """The LLM judge failed or answered in a form we cannot read."""


# -- dataset ----------------------------------------------------------------------
@dataclass
class EvalCase:
    """One line of the dataset."""

    id: str
    user_input: str
    reference: str
    facts: list[str]
    reference_doc_ids: list[str]
    answerable: bool
    history: list[dict] = field(default_factory=list)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def parse_case(data: Any) -> EvalCase:
    """Validate one decoded line; raise ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")  # noqa: TRY004
    missing = [k for k in ("id", "user_input", "reference", "facts", "reference_doc_ids", "answerable") if k not in data]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    if not isinstance(data["id"], str) or not data["id"].strip():
        raise ValueError("'id' must be a non-empty string")
    if not isinstance(data["user_input"], str) or not data["user_input"].strip():
        raise ValueError("'user_input' must be a non-empty string")
    if not isinstance(data["reference"], str):
        raise ValueError("'reference' must be a string")  # noqa: TRY004
    if not _is_str_list(data["facts"]) or any(not f.strip() for f in data["facts"]):
        raise ValueError("'facts' must be a list of non-empty strings")
    if not _is_str_list(data["reference_doc_ids"]):
        raise ValueError("'reference_doc_ids' must be a list of strings")
    if not isinstance(data["answerable"], bool):
        raise ValueError("'answerable' must be true or false")  # noqa: TRY004
    history = data.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
        for m in history
    ):
        raise ValueError("'history' must be a list of {\"role\": \"user\"|\"assistant\", \"content\": str} objects")
    return EvalCase(
        id=data["id"].strip(),
        user_input=data["user_input"],
        reference=data["reference"],
        facts=list(data["facts"]),
        reference_doc_ids=list(data["reference_doc_ids"]),
        answerable=data["answerable"],
        history=[{"role": m["role"], "content": m["content"]} for m in history],
    )


def load_dataset(path: Path) -> list[EvalCase]:
    """Read a JSONL eval dataset; DatasetError names the file and line of the first problem."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise DatasetError(f"Dataset {path} does not exist; pass --dataset PATH to a JSONL file.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Cannot read dataset {path} ({exc.__class__.__name__}: {exc}).") from exc
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}).") from exc
        try:
            case = parse_case(data)
        except ValueError as exc:
            raise DatasetError(f"{path} line {number}: {exc}.") from exc
        if case.id in seen:
            raise DatasetError(f"{path} line {number}: id '{case.id}' was already used on line {seen[case.id]}.")
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise DatasetError(f"Dataset {path} has no cases; add one JSON object per line.")
    return cases


# -- fact matching ----------------------------------------------------------------
_MARKER = re.compile(r"\s*\[\d{1,3}\]")


def normalize(text: str) -> str:
    """Case-folded, NFC, whitespace collapsed: the form facts are matched in."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def fact_in(fact: str, text: str) -> bool:
    """Is the fact in the text (case-insensitive, whitespace-normalised, [n] markers ignored)?

    A fact that starts or ends with a digit must not continue a number: "5%" is not
    found in "15%", "40" not in "140" or "40,5".
    """
    fact_n = normalize(fact)
    if not fact_n:
        return False
    hay = normalize(_MARKER.sub("", text))
    left = r"(?<![\d])(?<!\d[.,])" if fact_n[0].isdigit() else ""
    right = r"(?![\d])(?![.,]\d)" if fact_n[-1].isdigit() else ""
    return re.search(left + re.escape(fact_n) + right, hay) is not None


def fact_share(facts: list[str], texts: Iterable[str]) -> float | None:
    """Share of facts found in any of the texts (None when there are no facts)."""
    if not facts:
        return None
    texts = list(texts)
    return sum(1 for f in facts if any(fact_in(f, t) for t in texts)) / len(facts)


# -- retrieval metrics ------------------------------------------------------------
def doc_metrics(retrieved_doc_ids: list[str], reference_doc_ids: list[str], k: int) -> dict[str, float]:
    """Document hit@1, hit@k and reciprocal rank of the first passage from a reference document.

    A reference names a document by its name (`factsheet-2021`, see rag.identity) or full id."""
    if not reference_doc_ids:
        return {}

    def wanted(doc_id: str) -> bool:
        return any(matches(ref, doc_id) for ref in reference_doc_ids)

    top = retrieved_doc_ids[:k]
    rank = next((i for i, d in enumerate(top, start=1) if wanted(d)), None)
    return {
        "doc_hit_at_1": float(bool(top) and wanted(top[0])),
        "doc_hit_at_k": float(rank is not None),
        "mrr": 1.0 / rank if rank else 0.0,
    }


# -- citation metrics (ALCE-style, offline) ---------------------------------------
@dataclass
class PassageView:
    """What a citation can point at: a shown passage."""

    chunk_id: str
    doc_id: str
    text: str
    title: str = ""
    section: str = ""

    @property
    def shown_text(self) -> str:
        """Title, heading path and text: what the reader (or LLM) sees as the passage."""
        return "\n".join(part for part in (self.title, self.section, self.text) if part)


@dataclass
class SentenceVerdict:
    """One claim sentence of an answer and how its citations fare."""

    sentence: str
    cited: list[int]
    supported: bool
    needed: list[bool]


def claim_sentences(text: str) -> list[str]:
    """The answer's sentences that make a claim.

    Leaves out lines that only introduce a list ("Volgens de factsheet (Veel knelpunten):")
    and fragments without a content word or number; a piece ending in an abbreviation
    ("St.") is joined to the next one.
    """
    from .citations import markers, numbers_in, split_answer_sentences
    from .lexical import content_words

    pieces = split_answer_sentences(text)
    out = []
    for s in pieces:
        body = _MARKER.sub("", s).strip()
        if not markers(s) and body.endswith(":"):
            continue
        if not content_words(body) and not numbers_in(body):
            continue
        out.append(s)
    return out


def citation_verdicts(text: str, sources: dict[int, PassageView]) -> list[SentenceVerdict]:
    """ALCE citation recall/precision per claim sentence, with the offline support check.

    `sources` maps each [n] to the passage it stands for (the answer's citation list).
    """
    from .citations import markers

    shown = {n: p.shown_text for n, p in sources.items()}
    verdicts = []
    for s in claim_sentences(text):
        cited = [n for n in dict.fromkeys(markers(s)) if n in shown]
        supported = bool(cited) and supports(s, [shown[n] for n in cited])
        needed: list[bool] = []
        for n in cited:
            if not supported:
                needed.append(False)
            elif len(cited) == 1:
                needed.append(True)
            else:
                alone = supports(s, [shown[n]])
                rest = supports(s, [shown[m] for m in cited if m != n])
                needed.append(alone or not rest)
        verdicts.append(SentenceVerdict(s, cited, supported, needed))
    return verdicts


def citation_metrics(
    text: str, sources: dict[int, PassageView], shown_ids: Iterable[str]
) -> tuple[dict[str, float], list[SentenceVerdict]]:
    """Validity, supported-sentence share and citation precision of one answer.

    A marker [n] is valid when the answer's citations map n to a passage that was shown
    (retrieved for this question). An answer without any [n] cites nothing: not valid.
    """
    from .citations import markers

    found = markers(text)
    shown_ids = set(shown_ids)
    valid = {n: p for n, p in sources.items() if p.chunk_id in shown_ids}
    metrics: dict[str, float] = {"citation_validity": float(bool(found) and all(n in valid for n in found))}
    verdicts = citation_verdicts(text, valid)
    if verdicts:
        metrics["supported_sentences"] = sum(v.supported for v in verdicts) / len(verdicts)
    total = sum(len(v.needed) for v in verdicts)
    if total:
        metrics["citation_precision"] = sum(sum(v.needed) for v in verdicts) / total
    elif verdicts:
        metrics["citation_precision"] = 0.0
    return metrics, verdicts


# -- per-case results -------------------------------------------------------------
@dataclass
class CaseResult:
    """A case, what the pipeline answered and retrieved, and its metrics."""

    case: EvalCase
    response: str
    refused: bool
    citations: list[dict]
    passages: list[PassageView]
    k: int
    metrics: dict[str, float] = field(default_factory=dict)
    verdicts: list[SentenceVerdict] = field(default_factory=list)
    judge_errors: list[str] = field(default_factory=list)
    condensed_question: str | None = None
    # P(answerable) from the refusal model, and whether the answer (given even when refused) is right.
    answerability: float | None = None
    correct_if_answered: bool | None = None

    def as_json(self) -> dict:
        c = self.case
        return {
            "id": c.id,
            "user_input": c.user_input,
            "answerable": c.answerable,
            "facts": c.facts,
            "reference_doc_ids": c.reference_doc_ids,
            "response": self.response,
            "refused": self.refused,
            "citations": self.citations,
            "retrieved_doc_ids": [p.doc_id for p in self.passages],
            "retrieved_context_ids": [p.chunk_id for p in self.passages],
            "retrieved_contexts": [p.text for p in self.passages],
            "metrics": self.metrics,
            "answerability": self.answerability,
            "correct_if_answered": self.correct_if_answered,
            **self.readable_fields(),
        }

    def readable_fields(self) -> dict:
        """What the app's Evaluatie page shows a reader besides the id: the expected answer,
        the conversation before the question and the question as it was searched."""
        return {"reference": self.case.reference, "history": self.case.history,
                "condensed_question": self.condensed_question}

    def failures(self) -> list[str]:
        """Why this case fails (empty when it passes)."""
        m, c = self.metrics, self.case
        reasons = []
        if c.answerable and self.refused:
            reasons.append("false refusal")
        if not c.answerable and not self.refused:
            reasons.append("missed refusal")
        if c.answerable and not self.refused and m.get("fact_recall", 1.0) < 1.0:
            reasons.append(f"fact recall {m['fact_recall']:.2f}")
        if c.answerable and m.get("context_recall", 1.0) < 1.0:
            reasons.append(f"context recall {m['context_recall']:.2f}")
        if not self.refused:
            if m.get("citation_validity", 1.0) < 1.0:
                reasons.append("invalid citation")
            if m.get("supported_sentences", 1.0) < 1.0:
                reasons.append(f"supported sentences {m['supported_sentences']:.2f}")
        for name in ("faithfulness", "answer_relevance"):
            if name in m and m[name] < 0.5:
                reasons.append(f"{name} {m[name]:.2f}")
        return reasons


def score_case(result: CaseResult) -> CaseResult:
    """Fill result.metrics from the response and passages (judge metrics are added separately)."""
    c = result.case
    m: dict[str, float] = {}
    if c.answerable:
        m.update(doc_metrics([p.doc_id for p in result.passages], c.reference_doc_ids, result.k))
        ctx = fact_share(c.facts, [p.shown_text for p in result.passages[: result.k]])
        if ctx is not None:
            m["context_recall"] = ctx
        answer = 0.0 if result.refused else fact_share(c.facts, [result.response])
        if c.facts:
            m["fact_recall"] = float(answer or 0.0)
    m["refusal_correct"] = float(result.refused == (not c.answerable))
    # The case as a user sees it: an answer holding every fact, or a refusal where the sources are silent.
    m["correct"] = float(m.get("fact_recall", 0.0) == 1.0) if c.answerable else m["refusal_correct"]
    if not result.refused:
        m["answer_chars"] = float(len(result.response))
        sources = {}
        for c in result.citations:
            passage = next((p for p in result.passages if p.chunk_id == c["chunk_id"]), None)
            sources.setdefault(c["n"], passage or PassageView(c["chunk_id"], c["doc_id"], ""))
        cit, result.verdicts = citation_metrics(result.response, sources, [p.chunk_id for p in result.passages])
        m.update(cit)
    result.metrics = {**m, **{k: v for k, v in result.metrics.items() if k not in m}}
    return result


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(results: list[CaseResult], judged: bool = False) -> dict[str, float]:
    """Averages over the right populations; metrics with no data are left out, never 0/NaN."""
    answerable = [r for r in results if r.case.answerable]
    answered = [r for r in results if not r.refused]
    summary: dict[str, float | None] = {}
    for name in ("doc_hit_at_1", "doc_hit_at_k", "mrr", "context_recall", "fact_recall"):
        summary[name] = _mean([r.metrics[name] for r in answerable if name in r.metrics])
    summary["refusal_accuracy"] = _mean([r.metrics["refusal_correct"] for r in results])
    summary["correct"] = _mean([r.metrics["correct"] for r in results if "correct" in r.metrics])
    summary["false_refusals"] = float(sum(1 for r in answerable if r.refused))
    summary["missed_refusals"] = float(sum(1 for r in results if not r.case.answerable and not r.refused))
    lengths = [r.metrics["answer_chars"] for r in answered if "answer_chars" in r.metrics]
    summary["answer_chars_median"] = float(statistics.median(lengths)) if lengths else None
    for name in ("citation_validity", "supported_sentences", "citation_precision"):
        summary[name] = _mean([r.metrics[name] for r in answered if name in r.metrics])
    if judged:
        for name in ("faithfulness", "answer_relevance"):
            summary[name] = _mean([r.metrics[name] for r in answered if name in r.metrics])
        summary["judge_not_computed"] = float(sum(len(r.judge_errors) for r in results))
    summary["cases"] = float(len(results))
    summary["answerable_cases"] = float(len(answerable))
    return {k: round(v, 4) for k, v in summary.items() if v is not None}


# -- running pipelines --------------------------------------------------------------
def _progress(items: list, desc: str, show: bool):
    if not show:
        return items
    from tqdm import tqdm

    # leave=True: a finished bar stays on its own line (ending in a newline), so the table printed
    # after it starts on a fresh line, also when stderr goes to a log file or a pipe.
    return tqdm(items, desc=desc, unit="case", file=sys.stderr, leave=True)


def run_assistant(assistant, cases: list[EvalCase], k: int, desc: str = "ours", progress: bool = True) -> list[CaseResult]:
    """Run every case (with its history) through Assistant.ask and score it.

    For the risk-coverage curve, a refused answerable case is asked once more with the refusal
    threshold at 0, to learn whether the answer it held back would have been right."""
    results = []
    always_answers = None
    for case in _progress(cases, desc, progress):
        answer = assistant.ask(case.user_input, case.history, k=k)
        result = _result(case, answer, k)
        if case.answerable and answer.refused and answer.refusal_reason != "instruction":
            if always_answers is None:
                always_answers = type(assistant)(
                    assistant.settings.with_overrides(refusal_threshold=0.0), index=assistant.index, chat_model=None
                )
            held_back = _result(case, always_answers.ask(case.user_input, case.history, k=k), k)
            result.correct_if_answered = bool(held_back.metrics.get("fact_recall", 0.0) > 0)
        results.append(result)
    return results


def _result(case: EvalCase, answer, k: int) -> CaseResult:
    passages = [PassageView(p.chunk_id, p.doc_id, p.text, p.title, p.section) for p in answer.passages]
    citations = [{"n": c.n, "doc_id": c.passage.doc_id, "chunk_id": c.passage.chunk_id} for c in answer.citations]
    result = score_case(CaseResult(case, answer.text, answer.refused, citations, passages, k,
                                   condensed_question=answer.condensed_question))
    result.answerability = float(getattr(answer, "answerability", 0.0))
    if not case.answerable:
        result.correct_if_answered = False
    elif not answer.refused:
        result.correct_if_answered = bool(result.metrics.get("fact_recall", 0.0) > 0) if case.facts else True
    return result


def risk_coverage(results: list[CaseResult], points: int = 10) -> list[dict]:
    """Selective-answering curve: answer the most confident share of cases (coverage) and
    count how many of those answers are wrong (risk: an unanswerable question answered, or
    an answer without any expected fact). Cases ranked by the refusal model's P(answerable)."""
    ranked = sorted(
        (r for r in results if r.answerability is not None and r.correct_if_answered is not None),
        key=lambda r: -r.answerability,
    )
    if not ranked:
        return []
    curve = []
    for i in range(1, points + 1):
        n = max(1, round(len(ranked) * i / points))
        answered = ranked[:n]
        wrong = sum(1 for r in answered if not r.correct_if_answered)
        curve.append({"coverage": round(n / len(ranked), 3), "risk": round(wrong / n, 3),
                      "threshold": round(answered[-1].answerability, 4)})
    return curve


def operating_point(results: list[CaseResult]) -> dict | None:
    """Coverage and risk at the threshold actually used (what the user sees)."""
    scored = [r for r in results if r.correct_if_answered is not None]
    if not scored:
        return None
    answered = [r for r in scored if not r.refused]
    wrong = sum(1 for r in answered if not r.correct_if_answered)
    return {"coverage": round(len(answered) / len(scored), 3),
            "risk": round(wrong / len(answered), 3) if answered else 0.0}


def split_of(dataset: Path) -> str:
    """Which split a dataset file is: tuning (fit on) or dev (report only)."""
    stem = Path(dataset).stem
    if "tune" in stem or stem == "gold":
        return "tuning split (used to fit; do not report)"
    if "dev" in stem:
        return "dev split (report only, never tuned on)"
    return "custom dataset"


def _tutorial_documents(corpus: Path) -> list:
    """One LangChain Document per corpus file with its whole text, as our loaders extract it
    (the tutorial's starting point: a LangChain loader per file type)."""
    from langchain_core.documents import Document

    from .loaders import UnreadableFile, discover, load_file, read_manifest

    files, _ = discover([corpus])
    docs = []
    for p in files:
        try:
            loaded = load_file(p, read_manifest(p.parent))
        except UnreadableFile:
            continue
        text = "\n\n".join(d.page_content for d in loaded.documents)
        docs.append(Document(page_content=text, metadata={"doc_id": loaded.doc_id, "source": str(p)}))
    return docs


class TutorialPipeline:
    """The RAG a user copies from the LangChain tutorial, as a baseline.

    RecursiveCharacterTextSplitter(1000, 200) over the text of every corpus file as our
    loaders extract it (front matter off; a tutorial user would take a LangChain loader per
    file type), the same embedding
    model, langchain_chroma.Chroma in a temp dir, similarity_search top-4; the answer is the
    top passage with one [1]; it never refuses and ignores chat history.
    """

    def __init__(self, settings: Settings):
        import tempfile

        import chromadb.config
        from langchain_chroma import Chroma
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from .embeddings import get_embeddings

        docs = _tutorial_documents(Path(settings.corpus_dir))
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        self.chunks = splitter.split_documents(docs)
        if not self.chunks:
            raise RagError(f"The tutorial baseline found no readable files in {settings.corpus_dir}.")
        self._tmp = tempfile.TemporaryDirectory(prefix="rag-eval-tutorial-", ignore_cleanup_errors=True)
        self.store = Chroma(
            collection_name="tutorial",
            embedding_function=get_embeddings(settings.embed_model, settings.embed_batch_size),
            persist_directory=self._tmp.name,
            client_settings=chromadb.config.Settings(anonymized_telemetry=False, is_persistent=True),
        )
        ids = []
        counters: dict[str, int] = {}
        for doc in self.chunks:
            stem = doc.metadata["doc_id"]
            counters[stem] = counters.get(stem, 0) + 1
            ids.append(f"{stem}#{counters[stem]}")
        self.store.add_documents(self.chunks, ids=ids)

    def ask(self, question: str) -> tuple[str, list[PassageView]]:
        docs = self.store.similarity_search(question, k=TUTORIAL_K)
        passages = [PassageView(str(d.id), d.metadata["doc_id"], d.page_content, d.metadata["doc_id"]) for d in docs]
        answer = f"{passages[0].text.strip()} [1]" if passages else ""
        return answer, passages

    def close(self) -> None:
        try:
            self.store.delete_collection()
        except Exception as exc:  # noqa: BLE001 - best effort cleanup of a temp store
            log.debug("could not delete the tutorial collection: %s", exc)
        self._tmp.cleanup()


def run_tutorial(settings: Settings, cases: list[EvalCase], progress: bool = True) -> list[CaseResult]:
    """Baseline (c): the LangChain-tutorial pipeline over the same corpus and embedding model."""
    pipeline = TutorialPipeline(settings)
    try:
        results = []
        for case in _progress(cases, "langchain-tutorial", progress):
            answer, passages = pipeline.ask(case.user_input)
            citations = [{"n": 1, "doc_id": passages[0].doc_id, "chunk_id": passages[0].chunk_id}] if passages else []
            results.append(score_case(CaseResult(case, answer, False, citations, passages, TUTORIAL_K)))
        return results
    finally:
        pipeline.close()


# -- LLM judge (RAGAS-style, Dutch prompts) -----------------------------------------
JUDGE_STATEMENTS_PROMPT = """Je krijgt een vraag en een antwoord. Splits het antwoord in korte, op zichzelf staande
uitspraken: elke uitspraak bevat precies één bewering, zonder voornaamwoorden die naar een andere zin verwijzen.
Laat inleidingen zonder inhoud ("Volgens de factsheet:") weg.
Geef alleen JSON, zonder uitleg: {"uitspraken": ["...", "..."]}"""

JUDGE_FAITHFULNESS_PROMPT = """Je beoordeelt of uitspraken trouw zijn aan een context.
Beoordeel elke uitspraak afzonderlijk: geef oordeel 1 als de uitspraak rechtstreeks uit de context kan worden
afgeleid, en 0 als dat niet kan (ook als de uitspraak waar is maar niet in de context staat).
Getallen en namen moeten letterlijk in de context staan.
Geef alleen JSON, zonder uitleg: {"oordelen": [{"uitspraak": "...", "reden": "...", "oordeel": 0 of 1}]}"""

JUDGE_RELEVANCE_PROMPT = """Je krijgt een antwoord. Schrijf drie verschillende Nederlandse vragen waarop dit antwoord
precies het antwoord is. Geef ook aan of het antwoord ontwijkend is: 1 als het vaag of nietszeggend is of zegt het
niet te weten ("Dat staat niet in de beschikbare bronnen"), anders 0.
Geef alleen JSON, zonder uitleg: {"vragen": ["...", "...", "..."], "ontwijkend": 0 of 1}"""


def _judge_json(chat_model, system: str, user: str) -> dict:
    from langchain_core.messages import HumanMessage, SystemMessage

    try:
        reply = chat_model.invoke([SystemMessage(system), HumanMessage(user)])
    except Exception as exc:
        raise JudgeError(f"judge call failed: {exc.__class__.__name__}: {exc}") from exc
    text = str(reply.content).strip()
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise JudgeError(f"judge reply is not JSON: {text[:80]!r}")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise JudgeError(f"judge reply is not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise JudgeError("judge reply is not a JSON object")
    return data


def judge_faithfulness(chat_model, question: str, answer: str, contexts: list[str]) -> float:
    """RAGAS faithfulness: share of the answer's statements inferable from the contexts."""
    body = _MARKER.sub("", answer).strip()
    data = _judge_json(chat_model, JUDGE_STATEMENTS_PROMPT, f"Vraag: {question}\n\nAntwoord: {body}")
    statements = [s for s in data.get("uitspraken", []) if isinstance(s, str) and s.strip()]
    if not statements:
        raise JudgeError("judge found no statements in the answer")
    context = "\n\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, start=1))
    listed = "\n".join(f"{i}. {s}" for i, s in enumerate(statements, start=1))
    data = _judge_json(chat_model, JUDGE_FAITHFULNESS_PROMPT, f"Context:\n{context}\n\nUitspraken:\n{listed}")
    verdicts = data.get("oordelen")
    if not isinstance(verdicts, list) or len(verdicts) != len(statements):
        raise JudgeError(f"judge returned {len(verdicts) if isinstance(verdicts, list) else 'no'} verdicts "
                         f"for {len(statements)} statements")
    scores = []
    for v in verdicts:
        value = v.get("oordeel") if isinstance(v, dict) else None
        if value not in (0, 1, "0", "1"):
            raise JudgeError(f"judge verdict {value!r} is not 0 or 1")
        scores.append(int(value))
    return sum(scores) / len(scores)


def judge_relevance(chat_model, embeddings, question: str, answer: str) -> float:
    """RAGAS answer relevance: mean cosine between the question and questions generated from the answer,
    0 when the answer is noncommittal."""
    body = _MARKER.sub("", answer).strip()
    data = _judge_json(chat_model, JUDGE_RELEVANCE_PROMPT, f"Antwoord: {body}")
    generated = [q for q in data.get("vragen", []) if isinstance(q, str) and q.strip()]
    if not generated:
        raise JudgeError("judge generated no questions")
    if str(data.get("ontwijkend", 0)) in ("1", "True", "true"):
        return 0.0
    vectors = embeddings.encode([question] + generated, getattr(embeddings, "query_prefix", ""))
    sims = vectors[1:] @ vectors[0]
    return float(max(0.0, min(1.0, sum(float(s) for s in sims) / len(generated))))


def judge_results(results: list[CaseResult], chat_model, embeddings, progress: bool = True) -> None:
    """Add faithfulness and answer_relevance to answered cases; failures are recorded, not scored."""
    for r in _progress([r for r in results if not r.refused], "judge", progress):
        contexts = [p.shown_text for p in r.passages]
        question = r.condensed_question or r.case.user_input
        for name, call, args in (
            ("faithfulness", judge_faithfulness, (chat_model, question, r.response, contexts)),
            ("answer_relevance", judge_relevance, (chat_model, embeddings, question, r.response)),
        ):
            try:
                r.metrics[name] = round(call(*args), 4)
            except JudgeError as exc:
                log.warning("judge %s not computed for %s: %s", name, r.case.id, exc)
                r.judge_errors.append(f"{name}: {exc}")


# -- the run --------------------------------------------------------------------------
@dataclass
class Configuration:
    """One pipeline's results on the dataset."""

    name: str
    k: int
    results: list[CaseResult]
    summary: dict[str, float]


@dataclass
class EvalRun:
    """Ours (and optional baselines) on one dataset, with the config that produced it."""

    dataset: Path
    config: dict
    ours: Configuration
    baselines: list[Configuration] = field(default_factory=list)
    judged: bool = False

    def as_json(self) -> dict:
        return {
            "summary": self.ours.summary,
            "config": self.config,
            "split": split_of(self.dataset),
            "risk_coverage": risk_coverage(self.ours.results),
            "operating_point": operating_point(self.ours.results),
            "cases": [r.as_json() for r in self.ours.results],
        }


def git_commit(cwd: Path | None = None) -> str:
    """`git rev-parse --short HEAD`, or "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=cwd, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def run_eval(
    settings: Settings,
    cases: list[EvalCase],
    k: int | None = None,
    compare: bool = False,
    judge_model=None,
    index=None,
    chat_model=None,
    progress: bool = True,
    dataset: Path = DEFAULT_DATASET,
    own_index=None,
) -> EvalRun:
    """Run the dataset through our Assistant (and the baselines with `compare`).

    With `own_index` (a rag.evalindex.EvalIndex) the run uses its settings and index: only the
    documents the dataset is about, whatever else the live corpus holds."""
    from .answering import Assistant
    from .retrieval import check_k
    from .store import Index

    if own_index is not None:
        settings = own_index.settings
    k = check_k(k or settings.k)
    index = index or Index(settings).open()
    assistant = Assistant(settings, index=index, chat_model=chat_model)
    baselines: list[Configuration] = []
    if compare:
        for mode, name in (("lexical", "bm25-only"), ("dense", "dense-only")):
            variant = Assistant(settings.with_overrides(retrieval_mode=mode), index=index, chat_model=chat_model)
            results = run_assistant(variant, cases, k, name, progress)
            baselines.append(Configuration(name, k, results, summarize(results)))
        results = run_tutorial(settings, cases, progress)
        baselines.append(Configuration("langchain-tutorial", TUTORIAL_K, results, summarize(results)))
    results = run_assistant(assistant, cases, k, f"ours ({settings.retrieval_mode})", progress)
    if judge_model is not None:
        judge_results(results, judge_model, index.embeddings, progress)
    ours = Configuration(f"ours ({settings.retrieval_mode})", k, results, summarize(results, judged=judge_model is not None))
    config = {
        "embed_model": str(index.info().get("embed_model") or settings.embed_model),
        "answerer": assistant.backend,
        "k": k,
        "chunking": f"structure-aware size={settings.chunk_size} overlap={settings.chunk_overlap}",
        "commit": git_commit(),
        "dataset": str(dataset),
    }
    if own_index is not None:
        config["eval_index"] = own_index.describe()
    return EvalRun(Path(dataset), config, ours, baselines, judged=judge_model is not None)


# -- output -----------------------------------------------------------------------------
def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "not computed"
    if name in COUNT_METRICS or name == "answer_chars_median":
        return f"{value:.0f}"
    return f"{value:.3f}"


def _metric_names(configs: list[Configuration], judged: bool) -> list[str]:
    names = [n for n in SUMMARY_METRICS if any(n in c.summary for c in configs)]
    if judged:  # a judge that failed everywhere still shows its rows, as "not computed"
        for n in ("faithfulness", "answer_relevance"):
            if n not in names:
                names.insert(names.index("judge_not_computed") if "judge_not_computed" in names else len(names), n)
    return names


def summary_rows(run: EvalRun) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary (side by side when baselines ran)."""
    configs = run.baselines + [run.ours]
    header = ["metric", "over"] + [f"{c.name} k={c.k}" for c in configs]
    rows = []
    for name in _metric_names(configs, run.judged):
        label, over = SUMMARY_METRICS[name]
        cells = []
        for c in configs:
            judge_only = name in ("faithfulness", "answer_relevance", "judge_not_computed") and c is not run.ours
            cells.append("-" if judge_only else _fmt(name, c.summary.get(name)))
        rows.append([label, over] + cells)
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    def line(r):
        return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
           "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _quote(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in (text or "(empty)").splitlines())


def markdown_report(run: EvalRun) -> str:
    """The readable report: config, summary table, then every failing case."""
    cfg = run.config
    parts = [
        "# Answer-quality eval",
        "",
        (f"Dataset `{run.dataset}` — {split_of(run.dataset)} ({len(run.ours.results)} cases) · answerer `{cfg['answerer']}` · "
         f"embeddings `{cfg['embed_model']}` · k={cfg['k']} · chunking {cfg['chunking']} · commit `{cfg['commit']}`"
         + (" · own index of " + ", ".join(f"`{d['doc_id']}`" for d in cfg["eval_index"]["documents"])
            if cfg.get("eval_index") else "")),
        "",
        "## Summary",
        "",
        markdown_table(*summary_rows(run)),
        "",
        ("Retrieval and fact metrics average over answerable cases; citation metrics over answered (not refused) "
         "cases; refusal accuracy over all cases. Citation support is the offline ALCE-style check (numbers and "
         "names verbatim in the cited passages, content-word overlap >= rag.citations.SUPPORT_OVERLAP)."),
    ]
    curve, point = risk_coverage(run.ours.results), operating_point(run.ours.results)
    if curve:
        parts += ["", "## Risk-coverage (refusal model)", "",
                  markdown_table(["coverage", "risk", "P(answerable) at least"],
                                 [[f"{c['coverage']:.2f}", f"{c['risk']:.3f}", f"{c['threshold']:.3f}"] for c in curve]),
                  "",
                  ("Cases ranked by the refusal model's P(answerable); risk = share of the answered cases that are "
                   "wrong (an unanswerable question answered, or no expected fact in the answer)."
                   + (f" Operating point: coverage {point['coverage']:.2f}, risk {point['risk']:.3f}." if point else ""))]
    if run.baselines:
        parts += ["", ("Baselines: bm25-only and dense-only are our Assistant with RAG_RETRIEVAL_MODE=lexical/dense; "
                       "langchain-tutorial is RecursiveCharacterTextSplitter(1000, 200) + Chroma similarity_search "
                       "top-4 over the corpus' Markdown/text files, answering with the top passage, never refusing, "
                       "without chat history.")]
    failing = [r for r in run.ours.results if r.failures()]
    parts += ["", f"## Failing cases ({len(failing)} of {len(run.ours.results)})", ""]
    if not failing:
        parts.append("None.")
    for r in failing:
        c = r.case
        parts += [f"### `{c.id}` — {', '.join(r.failures())}", ""]
        if c.history:
            parts += ["History:", ""] + [f"- *{m['role']}:* {_md_cell(m['content'])}" for m in c.history] + [""]
        parts += [f"**Question:** {c.user_input}", ""]
        if r.condensed_question:
            parts += [f"*Condensed:* {r.condensed_question}", ""]
        parts += ["**Answer**" + (" (refused)" if r.refused else "") + ":", "", _quote(r.response), ""]
        if c.answerable:
            facts = ", ".join(f"{'✓' if fact_in(f, r.response) and not r.refused else '✗'} “{f}”" for f in c.facts)
            parts += [f"**Expected facts:** {facts or '(none)'}", "", f"**Reference:** {c.reference}", "",
                      f"**Reference documents:** {', '.join(c.reference_doc_ids) or '(none)'}", ""]
        else:
            parts += ["**Expected:** a refusal (not answerable from the sources).", ""]
        unsupported = [v.sentence for v in r.verdicts if not v.supported]
        if unsupported:
            parts += ["**Unsupported sentences:**", ""] + [f"- {_md_cell(s)}" for s in unsupported] + [""]
        if r.judge_errors:
            parts += ["**Judge not computed:** " + "; ".join(r.judge_errors), ""]
        parts += ["**Retrieved:**", ""]
        for i, p in enumerate(r.passages, start=1):
            has = [f for f in c.facts if fact_in(f, p.shown_text)]
            snippet = " ".join(p.text.split())
            snippet = snippet if len(snippet) <= 220 else snippet[:217] + "..."
            mark = f" — contains {', '.join('“' + f + '”' for f in has)}" if has else ""
            parts.append(f"{i}. `{p.doc_id}` `{p.chunk_id}` *{_md_cell(p.section)}*: {_md_cell(snippet)}{mark}")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def write_json(run: EvalRun, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run.as_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_report(run: EvalRun, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_report(run), encoding="utf-8")


# -- CLI ----------------------------------------------------------------------------------
@click.command("eval")
@click.option("--dataset", type=click.Path(path_type=Path, dir_okay=False), default=DEFAULT_DATASET, show_default=True,
              help="JSONL eval dataset (id, user_input, reference, facts, reference_doc_ids, answerable, history).")
@click.option("-k", "k", type=click.IntRange(1, MAX_K), default=None, help="Passages per question (default RAG_K).")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write summary, config and per-case results as JSON to this file.")
@click.option("--report", "report_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write a Markdown report (summary table and every failing case) to this file.")
@click.option("--compare", is_flag=True,
              help="Also run BM25-only, dense-only and the LangChain-tutorial pipeline; print them side by side.")
@click.option("--judge", is_flag=True,
              help="Add faithfulness and answer relevance judged by the configured LLM (needs RAG_LLM).")
@click.option("--own-index", is_flag=True,
              help="Evaluate on an index of only the corpus documents the dataset's reference_doc_ids name "
                   "(copied to RAG_INDEX_DIR/eval/, re-indexed when they change), not on the live index.")
def eval_command(dataset: Path, k: int | None, json_out: Path | None, report_out: Path | None,
                 compare: bool, judge: bool, own_index: bool) -> None:
    """Measure answer quality on an eval dataset (retrieval, answers, refusals, citations)."""
    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError: one line
        click.echo(f"Error: invalid setting: {str(exc).splitlines()[0]}", err=True)
        sys.exit(2)
    try:
        judge_model = None
        if judge:
            from .llm import build_chat_model, parse_llm_setting

            if parse_llm_setting(settings.llm)[0] == "none":
                click.echo("Error: --judge needs an LLM; set RAG_LLM=ollama:MODEL or openai:MODEL "
                           "(or leave out --judge).", err=True)
                sys.exit(2)
            judge_model = build_chat_model(settings)
        cases = load_dataset(dataset)
        click.echo(f"Dataset {dataset}: {split_of(dataset)}, {len(cases)} cases", err=True)
        eval_index = None
        if own_index:
            from .evalindex import prepare

            eval_index = prepare(settings, cases, dataset)
            click.echo(f"Own index {eval_index.settings.index_dir}: "
                       + ", ".join(d["doc_id"] for d in eval_index.documents)
                       + (f" (re-indexed: {', '.join(eval_index.changed)})" if eval_index.changed else ""), err=True)
        run = run_eval(settings, cases, k=k, compare=compare, judge_model=judge_model, dataset=dataset,
                       own_index=eval_index)
        if json_out:
            write_json(run, json_out)
        if report_out:
            write_report(run, report_out)
    except RagError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.stderr.flush()  # the finished progress bars' last newline, before the table on stdout
    click.echo(text_table(*summary_rows(run)))
    point = operating_point(run.ours.results)
    if point:
        click.echo(f"\nRefusal operating point: coverage {point['coverage']:.2f}, risk {point['risk']:.3f} "
                   "(risk-coverage curve in --report / --json)")
    failing = sum(1 for r in run.ours.results if r.failures())
    click.echo(f"\n{failing} of {len(run.ours.results)} cases fail"
               + (f"; details in {report_out}" if report_out else "; add --report OUT.md for details") + ".")
    if json_out:
        click.echo(f"JSON written to {json_out}")
