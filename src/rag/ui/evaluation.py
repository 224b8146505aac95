"""Evaluatie page: the latest `rag eval` report (metrics, comparison, failing cases) and a button to run it.

The button runs a dev split about the shipped corpus against that split's own index (rag.evalindex:
only the corpus documents the split names), so documents users upload never change the score.

The report is the JSON that `rag eval --json OUT` writes (summary, config, cases: ours only).
The side-by-side comparison with the baselines (`--compare`) is only in the Markdown report,
so it is read from the `.md` next to the JSON, and shown only when its "ours" column matches
the JSON (both from the same run). All report text is rendered as escaped Markdown.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import streamlit as st

from rag.identity import doc_name
from rag.ui import common

REPORT_PATH = Path("evals/reports/latest.json")  # relative to the working directory
# The report-only splits about the shipped corpus, with their Dutch label; the first is the default.
DEV_SPLITS = (
    (Path("evals/dev.jsonl"), "Vragen over de meegeleverde documenten"),
    (Path("evals/conversations-dev.jsonl"), "Gesprekken over de meegeleverde documenten"),
)
REPORT_ENV = "RAG_EVAL_REPORT"  # overrides REPORT_PATH (tests, other setups)
DATASET_ENV = "RAG_EVAL_DATASET"  # overrides DEV_SPLITS: one path, or several joined by os.pathsep
CHART_METRICS = {  # metric -> short label on the chart's axis
    "fact_recall": "Feitenrecall",
    "refusal_accuracy": "Terecht geweigerd/beantwoord",
    "context_recall": "Contextrecall",
}
OURS = "ours"
QUESTION_CHARS = 120  # a failing case's question in its expander label

COMMAND_TEMPLATE = ("rag eval --dataset {dataset} --own-index --compare "
                    "--report evals/reports/latest.md --json evals/reports/latest.json")
COMMAND = COMMAND_TEMPLATE.format(dataset=DEV_SPLITS[0][0].as_posix())
NO_REPORT = (
    "Er is nog geen evaluatierapport. Maak er een met de knop **Evaluatie uitvoeren** hierboven, "
    "of in een terminal (met de vergelijking met de andere zoekmethoden):"
)

# Dutch labels for the summary metrics of rag.evaluation.SUMMARY_METRICS (same keys, same order there).
METRIC_LABELS = {
    "doc_hit_at_1": "Juiste document op plek 1 (hit@1)",
    "doc_hit_at_k": "Juiste document in de top-k (hit@k)",
    "mrr": "MRR (document)",
    "context_recall": "Contextrecall (feiten in de top-k passages)",
    "fact_recall": "Feitenrecall (feiten in het antwoord)",
    "refusal_accuracy": "Terecht geweigerd of beantwoord",
    "correct": "Goed (alle feiten, of terecht geweigerd)",
    "false_refusals": "Onterecht geweigerd (aantal)",
    "missed_refusals": "Onterecht beantwoord (aantal)",
    "answer_chars_median": "Lengte antwoord, mediaan in tekens",
    "citation_validity": "Geldige bronverwijzingen",
    "supported_sentences": "Onderbouwde zinnen (ALCE)",
    "citation_precision": "Precisie bronverwijzingen (ALCE)",
    "faithfulness": "Trouw aan de bronnen (LLM-beoordelaar)",
    "answer_relevance": "Relevantie van het antwoord (LLM-beoordelaar)",
    "judge_not_computed": "Niet beoordeeld (aantal)",
    "cases": "Vragen",
    "answerable_cases": "Beantwoordbare vragen",
}
OVER_LABELS = {
    "answerable": "beantwoordbare vragen",
    "unanswerable": "niet-beantwoordbare vragen",
    "all": "alle vragen",
    "answered": "beantwoorde vragen",
    "judged": "beoordeelde antwoorden",
}
# CaseResult.failures() reasons (English) -> Dutch, by prefix; a score after the prefix is kept.
FAILURE_LABELS = (
    ("false refusal", "onterecht geweigerd"),
    ("missed refusal", "onterecht beantwoord (had geweigerd moeten worden)"),
    ("fact recall", "feitenrecall"),
    ("context recall", "contextrecall"),
    ("invalid citation", "ongeldige bronverwijzing"),
    ("supported sentences", "onderbouwde zinnen"),
    ("faithfulness", "trouw aan de bronnen"),
    ("answer_relevance", "relevantie"),
)
CONFIG_LABELS = (
    ("embed_model", "Embeddingmodel"),
    ("answerer", "Antwoorden"),
    ("k", "Passages per vraag (k)"),
    ("chunking", "Opknippen in passages"),
    ("commit", "Commit"),
)
# rag.evaluation.split_of (English) -> Dutch, by its first word.
SPLIT_LABELS = {
    "dev": "dev-set: alleen om te rapporteren, de assistent is er nooit op afgesteld",
    "tuning": "afstemset: de assistent is hierop afgesteld, dus de score is te rooskleurig",
    "custom": "eigen evaluatieset",
}


class ReportError(Exception):
    """The report file exists but cannot be read as an eval report."""


def report_path() -> Path:
    """Where the report is read and written: $RAG_EVAL_REPORT or REPORT_PATH."""
    return Path(os.environ.get(REPORT_ENV) or REPORT_PATH)


def datasets() -> list[tuple[Path, str]]:
    """The datasets the button offers, with their Dutch label: $RAG_EVAL_DATASET or DEV_SPLITS."""
    listed = [p for p in (os.environ.get(DATASET_ENV) or "").split(os.pathsep) if p.strip()]
    if listed:
        return [(Path(p), f"Evaluatieset {Path(p).name}") for p in listed]
    return list(DEV_SPLITS)


def command(dataset: Path) -> str:
    """The terminal command that writes the same report for `dataset`, with the comparison."""
    return COMMAND_TEMPLATE.format(dataset=Path(dataset).as_posix())


def split_label(dataset: str | Path) -> str:
    """Which kind of split a dataset file is, in Dutch."""
    from rag.evaluation import split_of

    return SPLIT_LABELS.get(split_of(Path(dataset)).split()[0], SPLIT_LABELS["custom"])


def documents_label(documents: list[dict]) -> str:
    """"Titel (doc-id), Titel (doc-id)" for the documents of an eval's own index."""
    return ", ".join(f"{d.get('title')} ({doc_name(str(d.get('doc_id')))})" if d.get("title") else doc_name(str(d.get("doc_id")))
                     for d in documents if isinstance(d, dict))


# -- reading a report ---------------------------------------------------------------
def load_report(path: Path) -> dict | None:
    """The report JSON, or None when there is none; ReportError when it is unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{exc.__class__.__name__}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"geen geldige JSON ({exc.msg}, regel {exc.lineno})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
        raise ReportError("het bestand heeft geen 'summary'")
    if not isinstance(data.get("cases", []), list):
        raise ReportError("'cases' is geen lijst")
    return data


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None  # "not computed", "-"


def parse_markdown_summary(text: str) -> list[dict]:
    """The configurations in a `rag eval --report` summary table: [{name, k, summary, cells}].

    `cells` keeps the table's formatted values, to check the table against a JSON report.
    """
    from rag.evaluation import SUMMARY_METRICS

    by_label = {label: name for name, (label, _) in SUMMARY_METRICS.items()}
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| metric | over |")), None)
    if start is None:
        return []
    def split(line):
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    header = split(lines[start])[2:]
    configs = []
    for column in header:
        m = re.fullmatch(r"(.*) k=(\d+)", column)
        configs.append({"name": m.group(1) if m else column, "k": int(m.group(2)) if m else None,
                        "summary": {}, "cells": {}})
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = split(line)
        name = by_label.get(cells[0])
        if name is None or len(cells) != len(header) + 2:
            continue
        for config, cell in zip(configs, cells[2:]):
            config["cells"][name] = cell
            value = _number(cell)
            if value is not None:
                config["summary"][name] = value
    return configs


def _matches(table_config: dict, summary: dict) -> bool:
    """Does a Markdown table column show exactly this JSON summary (same run)?"""
    from rag.evaluation import _fmt

    shared = [n for n in summary if n in table_config["cells"]]
    return bool(shared) and all(_fmt(n, summary[n]) == table_config["cells"][n] for n in shared)


def configurations(report: dict, path: Path) -> tuple[list[dict], str | None]:
    """Ours and any compared configurations [{name, k, summary}], ours last; plus a note for the user.

    Read from a `configurations` list or `baselines` list in the JSON when present, else from
    the Markdown report next to it (only when it belongs to the same run).
    """
    ours = {"name": OURS, "k": (report.get("config") or {}).get("k"), "summary": report["summary"]}
    for key in ("configurations", "baselines"):
        listed = report.get(key)
        if isinstance(listed, list) and all(isinstance(c, dict) and isinstance(c.get("summary"), dict)
                                            for c in listed) and listed:
            configs = [{"name": str(c.get("name", "?")), "k": c.get("k"), "summary": c["summary"]} for c in listed]
            return (configs if key == "configurations" else configs + [ours]), None
    markdown = Path(path).with_suffix(".md")
    try:
        table = parse_markdown_summary(markdown.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return [ours], None
    if len(table) < 2:
        return [ours], None
    if not _matches(table[-1], report["summary"]):
        return [ours], (f"De vergelijking in {markdown.name} hoort bij een andere evaluatie dan {Path(path).name} "
                        "en wordt daarom niet getoond.")
    return [{k: c[k] for k in ("name", "k", "summary")} for c in table], None


def summary_frame(configs: list[dict]):
    """The summary metrics as a table: one row per metric, one column per configuration."""
    import pandas as pd

    from rag.evaluation import SUMMARY_METRICS, _fmt

    names = [n for n in SUMMARY_METRICS if any(n in c["summary"] for c in configs)]
    names += sorted({n for c in configs for n in c["summary"]} - set(names))
    rows = []
    for name in names:
        over = SUMMARY_METRICS.get(name, ("", ""))[1]
        row = {"Maatstaf": METRIC_LABELS.get(name, name), "Gemiddeld over": OVER_LABELS.get(over, over)}
        for c in configs:
            value = c["summary"].get(name)
            row[_column(c, len(configs))] = "niet berekend" if value is None else _fmt(name, float(value))
        rows.append(row)
    return pd.DataFrame(rows)


def _column(config: dict, count: int) -> str:
    if count == 1:
        return "Waarde"
    return config["name"] + (f" (k={config['k']})" if config.get("k") is not None else "")


def chart_frame(configs: list[dict]):
    """Fact recall, refusal accuracy and context recall per configuration (rows: metrics)."""
    import pandas as pd

    data = {
        _column(c, len(configs)): [c["summary"].get(name) for name in CHART_METRICS] for c in configs
    }
    return pd.DataFrame(data, index=list(CHART_METRICS.values()), dtype=float)


def failing_cases(report: dict) -> list[tuple[dict, list[str]]]:
    """The report's cases that fail, with their reasons (CaseResult.failures(), in Dutch)."""
    from rag.evaluation import CaseResult, EvalCase

    out = []
    for data in report.get("cases", []):
        if not isinstance(data, dict):
            continue
        case = EvalCase(str(data.get("id", "?")), str(data.get("user_input", "")), "",
                        list(data.get("facts") or []), list(data.get("reference_doc_ids") or []),
                        bool(data.get("answerable", True)))
        result = CaseResult(case, str(data.get("response", "")), bool(data.get("refused")), [], [], 0,
                            metrics=dict(data.get("metrics") or {}))
        reasons = result.failures()
        if reasons:
            out.append((data, [dutch_failure(r) for r in reasons]))
    return out


def dutch_failure(reason: str) -> str:
    for prefix, dutch in FAILURE_LABELS:
        if reason.startswith(prefix):
            return dutch + reason[len(prefix):]
    return reason


# -- running the eval ---------------------------------------------------------------
def run_evaluation(eval_index, cases: list, dataset: Path, progress: Callable[[int, int], None] | None = None):
    """Run the cases (loaded from `dataset`) on the dataset's own index (a rag.evalindex.EvalIndex),
    ours only like `rag eval --own-index` without --compare, at k = RAG_K. Returns the
    rag.evaluation.EvalRun (`.as_json()` is what --json writes); `progress(done, total)` is called
    after every case.
    """
    from rag import evaluation as ev
    from rag.answering import Assistant
    from rag.retrieval import check_k
    from rag.store import Index

    settings = eval_index.settings
    index = Index(settings).open()
    try:
        assistant = Assistant(settings, index=index)  # its own, not the cached one of the live index
        k = check_k(settings.k)
        results = []
        for done, case in enumerate(cases, start=1):
            results += ev.run_assistant(assistant, [case], k, progress=False)
            if progress:
                progress(done, len(cases))
        embed_model = index.info().get("embed_model")
    finally:
        index.close()
    name = f"ours ({settings.retrieval_mode})"
    ours = ev.Configuration(name, k, results, ev.summarize(results))
    config = {
        "embed_model": str(embed_model or settings.embed_model),
        "answerer": assistant.backend,
        "k": k,
        "chunking": f"structure-aware size={settings.chunk_size} overlap={settings.chunk_overlap}",
        "commit": ev.git_commit(),
        "dataset": str(dataset),
        "eval_index": eval_index.describe(),
    }
    return ev.EvalRun(Path(dataset), config, ours)


def _choose_dataset() -> Path:
    options = datasets()
    labels = dict(options)
    return st.selectbox("Evaluatieset", [p for p, _ in options], key="eval_dataset",
                        format_func=lambda p: f"{labels[p]} ({p.as_posix()})",
                        help="Alleen sets waarop de assistent nooit is afgesteld, over de meegeleverde documenten.")


def _run_button(settings, path: Path, dataset: Path) -> None:
    from rag.errors import RagError
    from rag.evalindex import EvalDocumentsError, prepare
    from rag.evaluation import DatasetError, load_dataset, write_json

    if not st.button("Evaluatie uitvoeren", icon=":material/play_arrow:", type="primary",
                     help=f"Stelt alle vragen uit {dataset} aan de assistent en schrijft het rapport naar {path}."):
        return
    bar = st.empty()
    try:
        cases = load_dataset(dataset)
        bar.progress(0.0, text="Eigen index van de evaluatieset bijwerken…")
        eval_index = prepare(settings, cases, dataset, progress=lambda done, total: bar.progress(
            done / total, text=f"Eigen index: {done} van {total} passages"))
        bar.progress(0.0, text="Vragen voorbereiden…")
        run = run_evaluation(
            eval_index, cases, dataset,
            progress=lambda done, total: bar.progress(done / total, text=f"{done} van {total} vragen"),
        )
        write_json(run, path)
    except DatasetError as exc:
        st.error(common.escape_markdown(f"De evaluatievragen konden niet gelezen worden: {exc}"))
        return
    except EvalDocumentsError as exc:
        st.error(common.escape_markdown(exc.dutch))
        return
    except RagError as exc:
        st.error(exc.dutch)
        return
    except OSError as exc:
        st.error(common.escape_markdown(f"Het rapport kon niet geschreven worden naar {path}: {exc}"))
        return
    finally:
        bar.empty()
    failing = sum(1 for r in run.ours.results if r.failures())
    st.success(common.escape_markdown(
        f"Evaluatie klaar: {len(run.ours.results)} vragen uit {dataset.as_posix()}, waarvan {failing} niet goed "
        f"gaan, op een eigen index met {documents_label(eval_index.documents)}. Het rapport staat in {path}."
    ))


# -- rendering ----------------------------------------------------------------------
def evaluated_on(config: dict) -> list[str]:
    """Which split and which documents a report evaluated, as Markdown lines (none for an older
    report that did not record its dataset)."""
    esc = common.escape_markdown
    lines = []
    if config.get("dataset"):
        lines.append(f"**Evaluatieset:** {esc(Path(str(config['dataset'])).as_posix())} "
                     f"({esc(split_label(config['dataset']))})")
    own = config.get("eval_index")
    if isinstance(own, dict) and isinstance(own.get("documents"), list):
        lines.append(f"**Geëvalueerd op:** een eigen index met alleen {esc(documents_label(own['documents']))}; "
                     "toegevoegde of geüploade documenten tellen niet mee")
    elif config.get("dataset"):
        lines.append("**Geëvalueerd op:** de index met alle documenten uit de bronnenmap, ook toegevoegde en "
                     "geüploade, dus de score verandert als de documenten veranderen")
    return lines


def _show_config(report: dict, path: Path) -> None:
    config = report.get("config") or {}
    parts = evaluated_on(config)
    parts += [f"**{label}:** {common.escape_markdown(str(config[key]))}" for key, label in CONFIG_LABELS if key in config]
    if parts:
        st.markdown("  \n".join(parts))
    try:
        when = datetime.fromtimestamp(path.stat().st_mtime).strftime("%d-%m-%Y %H:%M")
        st.caption(common.escape_markdown(f"Rapport: {path} (bijgewerkt {when})"))
    except OSError:
        pass


def case_label(case: dict, reasons: list[str]) -> str:
    """The expander label of a failing case: its question (not its id) and why it fails."""
    question = str(case.get("user_input") or "").strip() or str(case.get("id", "?"))
    return common.escape_markdown(f"{common.excerpt(question, QUESTION_CHARS)} — {', '.join(reasons)}")


def _expected(case: dict, response: str, refused: bool) -> None:
    esc = common.escape_markdown
    st.markdown("**Verwacht**")
    if not case.get("answerable", True):
        st.markdown("Een weigering: de vraag is niet uit de bronnen te beantwoorden.")
        return
    reference = str(case.get("reference") or "").strip()
    if reference:
        st.markdown(esc(reference))
    from rag.evaluation import fact_in

    facts = [str(f) for f in case.get("facts") or []]
    if facts:
        lines = [f"- {'✓' if fact_in(f, response) and not refused else '✗'} {esc(f)}" for f in facts]
        st.markdown("Feiten in het antwoord:\n\n" + "\n".join(lines))
    wanted = ", ".join(esc(str(d)) for d in case.get("reference_doc_ids") or []) or "*(geen)*"
    st.markdown(f"Uit: {wanted}")


def _answered(response: str, refused: bool) -> None:
    st.markdown("**Geantwoord**" + (" (geweigerd)" if refused else ""))
    st.markdown(common.answer_markdown(response) if response.strip() else "*(leeg)*")


def _show_case(case: dict, reasons: list[str]) -> None:
    esc = common.escape_markdown
    with st.expander(case_label(case, reasons)):
        history = [m for m in case.get("history") or [] if isinstance(m, dict)]
        if history:
            st.markdown("**Eerder in het gesprek:**\n\n" + "\n".join(
                f"- *{'gebruiker' if m.get('role') == 'user' else 'assistent'}:* {esc(str(m.get('content', '')))}"
                for m in history))
        st.markdown(f"**Vraag:** {esc(str(case.get('user_input', '')))}")
        if case.get("condensed_question"):
            st.caption(f"Gezocht als: {esc(str(case['condensed_question']))}")
        refused = bool(case.get("refused"))
        response = str(case.get("response") or "")
        expected, answered = st.columns(2)
        with expected:
            _expected(case, response, refused)
        with answered:
            _answered(response, refused)
        retrieved = [doc_name(str(d)) for d in case.get("retrieved_doc_ids") or []]
        if retrieved:
            st.markdown("**Gevonden passages uit:**\n\n" + "\n".join(f"{i}. {esc(d)}" for i, d in enumerate(retrieved, 1)))
        else:
            st.markdown("**Gevonden passages uit:** *(geen)*")
        st.caption(esc(f"Vraag-id in de evaluatieset: {case.get('id', '?')}"))


def show_report(report: dict, path: Path, dataset: Path | None = None) -> None:
    """Config, summary table, comparison chart and failing cases of one report."""
    _show_config(report, path)
    configs, note = configurations(report, path)
    st.subheader("Samenvatting")
    st.table(summary_frame(configs), hide_index=True, border="horizontal")  # wraps long labels: nothing clipped
    st.caption("Zoek- en feitenmaten gelden voor beantwoordbare vragen, bronverwijzingen voor beantwoorde "
               "vragen, en terecht geweigerd of beantwoord voor alle vragen.")
    if note:
        st.caption(note)
    if len(configs) > 1:
        st.subheader("Vergelijking")
        st.bar_chart(chart_frame(configs), stack=False, y_label="score (0–1)")
        st.caption("bm25-only en dense-only zijn deze assistent met alleen trefwoord- of alleen semantisch zoeken; "
                   "langchain-tutorial is de standaardopzet uit de LangChain-handleiding.")
    failing = failing_cases(report)
    cases = len([c for c in report.get("cases", []) if isinstance(c, dict)])
    st.subheader(f"Vragen die niet goed gaan ({len(failing)} van {cases})")
    if not failing:
        st.success("Alle vragen gaan goed.")
    for case, reasons in failing:
        _show_case(case, reasons)
    st.caption("Opnieuw uitvoeren in een terminal, met de vergelijking met de andere zoekmethoden:")
    st.code(command(dataset or DEV_SPLITS[0][0]), language="bash", wrap_lines=True)


def render() -> None:
    """The Evaluatie page."""
    settings = common.load_settings()
    path = report_path()
    st.title("Evaluatie")
    st.markdown(
        "Hoe goed vindt en beantwoordt de assistent de vragen uit een evaluatieset? De knop stelt alle vragen "
        "opnieuw (dat kan enkele minuten duren) en vervangt het rapport. Dat gebeurt op een eigen index met "
        "alleen de documenten waar de set over gaat: documenten die u toevoegt of uploadt, veranderen de "
        "score dus niet."
    )
    dataset = _choose_dataset()
    _run_button(settings, path, dataset)
    try:
        report = load_report(path)
    except ReportError as exc:
        st.error(common.escape_markdown(f"Het rapport {path} kan niet gelezen worden: {exc}. "
                                        "Maak een nieuw rapport met de knop of met:"))
        st.code(command(dataset), language="bash", wrap_lines=True)
        return
    if report is None:
        st.info(NO_REPORT)
        st.code(command(dataset), language="bash", wrap_lines=True)
        return
    show_report(report, path, dataset)


if __name__ == "__main__":
    render()
