"""The Evaluatie page through AppTest: a hand-written report, no report, and the run button on a real temp index.

The report and dataset paths come from RAG_EVAL_REPORT / RAG_EVAL_DATASET and the tests run in a
temp working directory, so the repository's evals/reports is never read or written.
"""

from __future__ import annotations

import json

import pytest
from apphelpers import APP, app_env, make_root
from streamlit.testing.v1 import AppTest

from rag.evaluation import load_dataset
from rag.ui import evaluation as page

EVAL_PAGE = "src/rag/ui/evaluation.py"
TIMEOUT = 180  # the button run loads the embedding model and answers every case

SUMMARY = {
    "doc_hit_at_1": 0.5, "doc_hit_at_k": 1.0, "mrr": 0.75, "context_recall": 1.0, "fact_recall": 0.5,
    "refusal_accuracy": 0.6667, "false_refusals": 0.0, "missed_refusals": 1.0, "answer_chars_median": 120.0,
    "citation_validity": 1.0, "supported_sentences": 1.0, "citation_precision": 1.0, "cases": 3.0,
    "answerable_cases": 2.0,
}
CONFIG = {"embed_model": "sentence-transformers/all-MiniLM-L6-v2", "answerer": "extractief", "k": 5,
          "chunking": "structure-aware size=700 overlap=0", "commit": "abc1234"}
PASSING = {
    "id": "fs-goed", "user_input": "Aan hoeveel pilots werken ze samen?", "answerable": True,
    "facts": ["meer dan 200 pilots"], "reference_doc_ids": ["factsheet-2021"],
    "response": "Aan meer dan 200 pilots [1].", "refused": False, "citations": [],
    "retrieved_doc_ids": ["factsheet-2021"], "retrieved_context_ids": ["factsheet-2021#1"],
    "retrieved_contexts": ["..."],
    "metrics": {"doc_hit_at_1": 1.0, "doc_hit_at_k": 1.0, "mrr": 1.0, "context_recall": 1.0, "fact_recall": 1.0,
                "refusal_correct": 1.0, "citation_validity": 1.0, "supported_sentences": 1.0},
}
FAILING = {
    "id": "fs-knelpunten", "user_input": "Hoeveel procent van de gemeenten ervaart <b>knelpunten</b>?",
    "answerable": True, "reference": "Vrijwel alle gemeenten (91%) ervaren knelpunten.", "facts": ["91%", "knelpunten"], "reference_doc_ids": ["factsheet-2021"],
    "response": "<script>alert(1)</script> **Veel** gemeenten ervaren knelpunten [1].", "refused": False,
    "citations": [], "retrieved_doc_ids": ["rapport_2021", "handreiking-2021"],
    "retrieved_context_ids": ["rapport_2021#3", "handreiking-2021#7"], "retrieved_contexts": ["...", "..."],
    "metrics": {"doc_hit_at_1": 0.0, "doc_hit_at_k": 1.0, "mrr": 0.5, "context_recall": 1.0, "fact_recall": 0.5,
                "refusal_correct": 1.0, "citation_validity": 1.0, "supported_sentences": 1.0},
}
MISSED = {
    "id": "weer-utrecht", "user_input": "Wat voor weer wordt het morgen in Utrecht?", "answerable": False,
    "facts": [], "reference_doc_ids": [], "response": "Het wordt zonnig [1].", "refused": False, "citations": [],
    "retrieved_doc_ids": ["rapport_2021"], "retrieved_context_ids": ["rapport_2021#1"], "retrieved_contexts": ["..."],
    "metrics": {"refusal_correct": 0.0, "citation_validity": 1.0, "supported_sentences": 1.0},
}
COMPARISON_MD = """# Answer-quality eval

## Summary

| metric | over | bm25-only k=5 | dense-only k=5 | langchain-tutorial k=4 | ours (hybrid) k=5 |
|---|---|---:|---:|---:|---:|
| Context recall (facts in top-k) | answerable | 0.929 | 0.900 | 0.900 | 1.000 |
| Fact recall (facts in answer) | answerable | 0.000 | 0.781 | 0.505 | 0.500 |
| Refusal accuracy | all | 0.186 | 0.884 | 0.814 | 0.667 |
| Answer length, median chars | answered | not computed | 216 | 755 | 120 |
| Cases | all | 86 | 86 | 86 | 3 |
"""


@pytest.fixture(scope="module")
def unindexed(tmp_path_factory):
    """An empty corpus and no index: the report pages never need the embedding model
    (and the Chat page, run first, has nothing to index)."""
    return make_root(tmp_path_factory.mktemp("evalpage") / "root", corpus=False, index=False)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("evalpage-indexed") / "root")


def write_report(path, cases=(PASSING, FAILING, MISSED), summary=SUMMARY):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summary": summary, "config": CONFIG, "cases": list(cases)}), encoding="utf-8")
    return path


def open_page(monkeypatch, root, workdir, **env: str) -> AppTest:
    """The app with its env at `root`, run from `workdir`, switched to the Evaluatie page."""
    monkeypatch.chdir(workdir)
    for key, value in {**app_env(root), page.REPORT_ENV: str(workdir / "reports" / "latest.json"),
                       page.DATASET_ENV: str(workdir / "gold.jsonl"), **env}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    at.switch_page(EVAL_PAGE).run()
    assert not at.exception, at.exception
    return at


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.main.markdown)


def summary_table(at: AppTest):
    """The summary as a static table (long labels wrap instead of being clipped)."""
    assert not at.dataframe
    return at.table[0].value


# -- a hand-written report -------------------------------------------------------------
def test_report_shows_config_metrics_and_failing_cases(unindexed, tmp_path, monkeypatch):
    write_report(tmp_path / "reports" / "latest.json")
    at = open_page(monkeypatch, unindexed, tmp_path)

    assert at.title[0].value == "Evaluatie"
    assert "Evaluatie uitvoeren" in [b.label for b in at.button]
    text = markdown(at)
    assert "all\\-MiniLM\\-L6\\-v2" in text and "extractief" in text and "abc1234" in text
    assert "structure\\-aware size\\=700 overlap\\=0" in text

    table = summary_table(at)
    assert list(table.columns) == ["Maatstaf", "Gemiddeld over", "Waarde"]
    values = dict(zip(table["Maatstaf"], table["Waarde"]))
    assert values["Feitenrecall (feiten in het antwoord)"] == "0.500"
    assert values["Terecht geweigerd of beantwoord"] == "0.667"
    assert values["Onterecht beantwoord (aantal)"] == "1"
    assert values["Vragen"] == "3"
    assert not at.get("vega_lite_chart")  # only one configuration: nothing to compare

    assert "Vragen die niet goed gaan (2 van 3)" in [h.value for h in at.subheader]
    labels = [e.label for e in at.main.expander]  # the question a reader recognises, not the dataset id
    assert labels == ["Hoeveel procent van de gemeenten ervaart &lt;b\\>knelpunten&lt;/b\\>? — feitenrecall 0\\.50",
                      "Wat voor weer wordt het morgen in Utrecht? — onterecht beantwoord "
                      "\\(had geweigerd moeten worden\\)"]
    case = "\n".join(m.value for m in at.expander[0].markdown)
    assert "&lt;b\\>knelpunten&lt;/b\\>" in case  # the question, escaped
    expected, answered = at.expander[0].columns
    expected_text = "\n".join(m.value for m in expected.markdown)
    answered_text = "\n".join(m.value for m in answered.markdown)
    assert expected_text.startswith("**Verwacht**\nVrijwel alle gemeenten \\(91%\\) ervaren knelpunten\\.")
    assert "- ✗ 91%" in expected_text and "- ✓ knelpunten" in expected_text
    assert answered_text.startswith("**Geantwoord**\n")
    assert "&lt;script\\>alert\\(1\\)&lt;/script\\> \\*\\*Veel\\*\\* gemeenten" in answered_text  # escaped
    assert "1. rapport\\_2021" in case and "2. handreiking\\-2021" in case
    assert "<script>" not in case
    assert any("fs\\-knelpunten" in c.value for c in at.expander[0].caption)  # the id, for maintainers, small
    assert "weigering" in "\n".join(m.value for m in at.expander[1].markdown)
    assert at.code[-1].value == page.COMMAND


def test_comparison_from_the_markdown_report_is_charted(unindexed, tmp_path, monkeypatch):
    path = write_report(tmp_path / "reports" / "latest.json")
    path.with_suffix(".md").write_text(COMPARISON_MD, encoding="utf-8")
    at = open_page(monkeypatch, unindexed, tmp_path)

    table = summary_table(at)
    assert list(table.columns)[2:] == ["bm25-only (k=5)", "dense-only (k=5)", "langchain-tutorial (k=4)",
                                       "ours (hybrid) (k=5)"]
    fact = table[table["Maatstaf"] == "Feitenrecall (feiten in het antwoord)"].iloc[0]
    assert fact["bm25-only (k=5)"] == "0.000" and fact["ours (hybrid) (k=5)"] == "0.500"
    assert len(at.get("vega_lite_chart")) == 1
    assert "Vergelijking" in [h.value for h in at.subheader]


def test_comparison_from_another_run_is_not_charted(unindexed, tmp_path, monkeypatch):
    path = write_report(tmp_path / "reports" / "latest.json", summary={**SUMMARY, "fact_recall": 0.75})
    path.with_suffix(".md").write_text(COMPARISON_MD, encoding="utf-8")
    at = open_page(monkeypatch, unindexed, tmp_path)

    assert list(summary_table(at).columns) == ["Maatstaf", "Gemiddeld over", "Waarde"]
    assert not at.get("vega_lite_chart")
    assert any("hoort bij een andere evaluatie" in c.value for c in at.caption)


def test_comparison_helpers():
    configs = page.parse_markdown_summary(COMPARISON_MD)
    assert [c["name"] for c in configs] == ["bm25-only", "dense-only", "langchain-tutorial", "ours (hybrid)"]
    assert configs[0]["summary"] == {"context_recall": 0.929, "fact_recall": 0.0, "refusal_accuracy": 0.186,
                                     "cases": 86.0}
    chart = page.chart_frame(configs)
    assert list(chart.index) == ["Feitenrecall", "Terecht geweigerd/beantwoord", "Contextrecall"]
    assert chart.loc["Feitenrecall", "dense-only (k=5)"] == pytest.approx(0.781)


# -- no report, a broken report ----------------------------------------------------------
def test_no_report_explains_how_to_make_one(unindexed, tmp_path, monkeypatch):
    at = open_page(monkeypatch, unindexed, tmp_path)

    assert "nog geen evaluatierapport" in at.info[0].value
    assert "Evaluatie uitvoeren" in at.info[0].value
    assert at.code[0].value == page.COMMAND
    assert not at.dataframe
    assert not (tmp_path / "reports").exists()


def test_unreadable_report_is_a_dutch_error(unindexed, tmp_path, monkeypatch):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "latest.json").write_text("{niet: json", encoding="utf-8")
    at = open_page(monkeypatch, unindexed, tmp_path)

    assert "kan niet gelezen worden" in at.error[0].value
    assert at.code[0].value == page.COMMAND


def test_default_paths_are_relative_to_the_working_dir(monkeypatch):
    monkeypatch.delenv(page.REPORT_ENV, raising=False)
    monkeypatch.delenv(page.DATASET_ENV, raising=False)
    assert page.report_path() == page.REPORT_PATH
    assert str(page.REPORT_PATH) == "evals/reports/latest.json"
    assert page.dataset_path() == page.DATASET_PATH


# -- the button ------------------------------------------------------------------------------
@pytest.mark.slow
def test_button_runs_the_eval_and_writes_the_report(indexed, tmp_path, monkeypatch):
    from conftest import ROOT

    gold = ROOT / "evals" / "tune.jsonl"
    refusal = next(c.id for c in load_dataset(gold) if not c.answerable)
    lines = [line for line in gold.read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line)["id"] in {"fs-aantal-pilots", refusal}]
    assert len(lines) == 2
    (tmp_path / "gold.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    at = open_page(monkeypatch, indexed, tmp_path)
    assert at.info and "nog geen evaluatierapport" in at.info[0].value

    next(b for b in at.button if b.label == "Evaluatie uitvoeren").click().run()
    assert not at.exception, at.exception

    report = tmp_path / "reports" / "latest.json"
    assert report.is_file()
    data = json.loads(report.read_text(encoding="utf-8"))
    assert set(data) == {"summary", "config", "split", "risk_coverage", "operating_point", "cases"}
    assert data["summary"]["cases"] == 2 and data["summary"]["answerable_cases"] == 1
    assert data["config"]["answerer"] == "extractief" and data["config"]["k"] == 5
    assert "multilingual-e5-small" in data["config"]["embed_model"]
    assert [c["id"] for c in data["cases"]] == [json.loads(line)["id"] for line in lines]
    assert "Evaluatie klaar\\: 2 vragen" in at.success[0].value
    values = dict(zip(summary_table(at)["Maatstaf"], summary_table(at)["Waarde"]))
    assert values["Vragen"] == "2"
    assert not at.info  # the no-report hint is gone


def test_button_with_a_missing_dataset_is_a_dutch_error(unindexed, tmp_path, monkeypatch):
    at = open_page(monkeypatch, unindexed, tmp_path, **{page.DATASET_ENV: str(tmp_path / "bestaat-niet.jsonl")})
    next(b for b in at.button if b.label == "Evaluatie uitvoeren").click().run()
    assert not at.exception, at.exception
    assert "evaluatievragen konden niet gelezen worden" in at.error[0].value
    assert "bestaat\\-niet\\.jsonl" in at.error[0].value
    assert not (tmp_path / "reports").exists()
    assert not (unindexed / "index" / "catalog.sqlite").exists()  # checked before the index is touched


# -- `rag eval` writes what the page shows ------------------------------------------------
def tiny_dataset(path, ids=("fs-aantal-pilots",)):
    """Cases of the shipped gold set (by id) and its first unanswerable one, as a JSONL file."""
    from conftest import ROOT

    gold = ROOT / "evals" / "tune.jsonl"
    refusal = next(c.id for c in load_dataset(gold) if not c.answerable)
    lines = [line for line in gold.read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line)["id"] in {*ids, refusal}]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_rag_eval_prints_its_table_on_a_fresh_line_and_the_page_shows_its_questions(indexed, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rag.cli import main

    cases = tiny_dataset(tmp_path / "gold.jsonl")
    for key, value in app_env(indexed).items():
        monkeypatch.setenv(key, value)
    report = tmp_path / "reports" / "latest.json"
    result = CliRunner().invoke(main, ["eval", "--dataset", str(tmp_path / "gold.jsonl"), "--json", str(report),
                                       "--report", str(report.with_suffix(".md"))])
    assert result.exit_code == 0, result.output
    lines = result.output.split("\n")  # "\r" kept: a progress bar left on the table's line would show here
    assert any(line.startswith("\r") and "100%" in line for line in lines)  # the progress bar ran
    header = next(line for line in lines if "metric" in line and "over" in line)
    assert header.startswith("metric") and "\r" not in header

    written = json.loads(report.read_text(encoding="utf-8"))["cases"]
    assert [c["user_input"] for c in written] == [c["user_input"] for c in cases]
    assert [c["reference"] for c in written] == [c["reference"] for c in cases]
    assert all("history" in c and "condensed_question" in c for c in written)

    # The page lists failing cases by their question; make one fail by expecting a fact nobody states.
    written[0]["facts"] = ["een feit dat nergens staat"]
    written[0]["metrics"]["fact_recall"] = 0.0
    data = json.loads(report.read_text(encoding="utf-8"))
    report.write_text(json.dumps({**data, "cases": written}), encoding="utf-8")
    at = open_page(monkeypatch, indexed, tmp_path)
    labels = [e.label for e in at.main.expander]
    assert labels and labels[0].startswith(page.common.escape_markdown(cases[0]["user_input"]))
    assert not any(label.startswith(cases[0]["id"]) for label in labels)
    assert any(page.common.escape_markdown(cases[0]["reference"]) in m.value for m in at.main.expander[0].markdown)
