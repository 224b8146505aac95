"""The Evaluatie page through AppTest: a hand-written report, no report, and the run button on a real temp index.

The report and dataset paths come from RAG_EVAL_REPORT / RAG_EVAL_DATASET and the tests run in a
temp working directory, so the repository's evals/reports is never read or written. The button runs
on the dataset's own index (rag.evalindex), so an upload to the live corpus leaves its score alone.
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
    assert at.code[-1].value == page.command(tmp_path / "gold.jsonl")
    assert "Evaluatieset:" not in text  # an older report that did not record its dataset: nothing guessed


def test_report_says_which_split_and_documents_it_evaluated(unindexed, tmp_path, monkeypatch):
    path = write_report(tmp_path / "reports" / "latest.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["config"].update(dataset="evals/dev.jsonl", eval_index={"documents": [
        {"doc_id": "factsheet-2021", "title": "Factsheet Aansluiting onderwijs en jeugdhulp 2021"},
        {"doc_id": "projectpagina-2021", "title": ""}], "index_dir": ".rag/eval/dev/index"})
    path.write_text(json.dumps(data), encoding="utf-8")
    at = open_page(monkeypatch, unindexed, tmp_path)

    text = markdown(at)
    assert "**Evaluatieset:** evals/dev\\.jsonl (dev\\-set\\: alleen om te rapporteren" in text
    assert ("**Geëvalueerd op:** een eigen index met alleen Factsheet Aansluiting onderwijs en jeugdhulp 2021 "
            "\\(factsheet\\-2021\\), projectpagina\\-2021; toegevoegde of geüploade documenten tellen niet mee") in text

    data["config"].update(dataset="evals/tune.jsonl")  # a `rag eval` run on the live index
    del data["config"]["eval_index"]
    path.write_text(json.dumps(data), encoding="utf-8")
    text = markdown(open_page(monkeypatch, unindexed, tmp_path))
    assert "evals/tune\\.jsonl (afstemset" in text
    assert "**Geëvalueerd op:** de index met alle documenten uit de bronnenmap, ook toegevoegde" in text


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
    assert at.code[0].value == page.command(tmp_path / "gold.jsonl")
    assert "--own-index" in at.code[0].value
    assert not at.dataframe
    assert not (tmp_path / "reports").exists()


def test_unreadable_report_is_a_dutch_error(unindexed, tmp_path, monkeypatch):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "latest.json").write_text("{niet: json", encoding="utf-8")
    at = open_page(monkeypatch, unindexed, tmp_path)

    assert "kan niet gelezen worden" in at.error[0].value
    assert at.code[0].value == page.command(tmp_path / "gold.jsonl")


def test_default_paths_are_relative_to_the_working_dir(monkeypatch):
    monkeypatch.delenv(page.REPORT_ENV, raising=False)
    monkeypatch.delenv(page.DATASET_ENV, raising=False)
    assert page.report_path() == page.REPORT_PATH
    assert str(page.REPORT_PATH) == "evals/reports/latest.json"
    assert [p.as_posix() for p, _ in page.datasets()] == ["evals/dev.jsonl", "evals/conversations-dev.jsonl"]
    assert page.COMMAND == ("rag eval --dataset evals/dev.jsonl --own-index --compare "
                            "--report evals/reports/latest.md --json evals/reports/latest.json")


def test_the_page_offers_dev_splits_about_the_shipped_corpus():
    """Report-only splits (never the tuning split) whose every document ships in corpus/."""
    from conftest import ROOT

    from rag.evalindex import referenced_documents
    from rag.evaluation import split_of

    shipped = {p.stem for p in (ROOT / "corpus").iterdir() if p.suffix in (".md", ".pdf", ".txt", ".html", ".docx")}
    for dataset, label in page.DEV_SPLITS:
        assert split_of(dataset).startswith("dev split"), dataset
        documents = referenced_documents(load_dataset(ROOT / dataset))
        assert documents and set(documents) <= shipped, (dataset, documents)
        assert "meegeleverde documenten" in label
    assert any(c.history for c in load_dataset(ROOT / page.DEV_SPLITS[1][0]))  # the conversation set


def test_the_dataset_is_chosen_on_the_page(unindexed, tmp_path, monkeypatch):
    import os

    both = os.pathsep.join([str(tmp_path / "een.jsonl"), str(tmp_path / "twee.jsonl")])
    at = open_page(monkeypatch, unindexed, tmp_path, **{page.DATASET_ENV: both})
    box = at.selectbox(key="eval_dataset")
    assert box.label == "Evaluatieset"
    assert [str(o) for o in box.options] == [f"Evaluatieset een.jsonl ({tmp_path.as_posix()}/een.jsonl)",
                                             f"Evaluatieset twee.jsonl ({tmp_path.as_posix()}/twee.jsonl)"]
    box.select_index(1).run()
    assert at.code[0].value == page.command(tmp_path / "twee.jsonl")


# -- the button ------------------------------------------------------------------------------
DEV_CASES = ("dev-en-pilots", "dev-vormen-gemeenten-ketenaanpak", "dev-na-kosten-arrangement")
# What an upload could add: the answer to a dev question the shipped documents do not answer.
UPLOAD_NAME = "kosten-onderwijszorgarrangementen.md"
UPLOAD = ("# Kosten van onderwijszorgarrangementen\n\n"
          "Een onderwijszorgarrangement kost gemiddeld 12.500 euro per leerling per jaar.\n")


def dev_subset(path, ids=DEV_CASES) -> list[dict]:
    """These cases of evals/dev.jsonl, as a JSONL file."""
    from conftest import ROOT

    lines = [line for line in (ROOT / "evals" / "dev.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line)["id"] in ids]
    assert len(lines) == len(ids)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [json.loads(line) for line in lines]


def click_run(at: AppTest) -> dict:
    """Press the button; the report it wrote."""
    next(b for b in at.button if b.label == "Evaluatie uitvoeren").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return json.loads(page.report_path().read_text(encoding="utf-8"))


@pytest.mark.slow
def test_button_runs_the_eval_on_the_sets_own_index_and_writes_the_report(indexed, tmp_path, monkeypatch):
    cases = dev_subset(tmp_path / "gold.jsonl")
    at = open_page(monkeypatch, indexed, tmp_path)
    assert at.info and "nog geen evaluatierapport" in at.info[0].value

    data = click_run(at)
    assert set(data) == {"summary", "config", "split", "risk_coverage", "operating_point", "cases"}
    assert data["summary"]["cases"] == 3 and data["summary"]["answerable_cases"] == 2
    assert data["config"]["answerer"] == "extractief" and data["config"]["k"] == 5
    assert "multilingual-e5-small" in data["config"]["embed_model"]
    assert data["config"]["dataset"] == str(tmp_path / "gold.jsonl")
    own = data["config"]["eval_index"]
    assert [d["doc_id"] for d in own["documents"]] == ["corpus/factsheet-2021.md"]  # only what the set is about
    assert own["documents"][0]["title"] == "Factsheet Aansluiting onderwijs en jeugdhulp 2021"
    assert own["index_dir"] == str(indexed / "index" / "eval" / "gold" / "index")
    assert sorted(p.name for p in (indexed / "index" / "eval" / "gold" / "corpus").iterdir()) == ["factsheet-2021.md"]
    assert [c["id"] for c in data["cases"]] == [c["id"] for c in cases]

    assert "Evaluatie klaar\\: 3 vragen uit" in at.success[0].value
    assert "eigen index met Factsheet Aansluiting onderwijs en jeugdhulp 2021 \\(factsheet\\-2021\\)" in at.success[0].value
    values = dict(zip(summary_table(at)["Maatstaf"], summary_table(at)["Waarde"]))
    assert values["Vragen"] == "3"
    assert "**Geëvalueerd op:** een eigen index met alleen Factsheet" in markdown(at)
    assert not at.info  # the no-report hint is gone


@pytest.mark.slow
def test_an_upload_to_the_live_corpus_does_not_change_the_score(tmp_path, monkeypatch):
    """The page's failing cases, answers and summary stay the same when a document is added to the live
    corpus, though the live index now answers one of the set's questions from it (the old page's did)."""
    from apphelpers import settings_for

    from rag.answering import Assistant
    from rag.store import Index

    root = make_root(tmp_path / "root")
    dev_subset(tmp_path / "gold.jsonl")
    at = open_page(monkeypatch, root, tmp_path)
    before = click_run(at)
    failing_before = [c for c, _ in page.failing_cases(before)]

    (root / "corpus" / UPLOAD_NAME).write_text(UPLOAD, encoding="utf-8")  # what the Bronnen page does
    live = Index(settings_for(root))
    assert live.ingest(paths=[root / "corpus" / UPLOAD_NAME]).changed_docs == [f"corpus/{UPLOAD_NAME}"]
    live.close()
    answer = Assistant(settings_for(root)).ask("Wat kost een onderwijszorgarrangement gemiddeld?")
    assert not answer.refused and "12.500" in answer.text  # on the live index the upload answers it ...
    kosten = next(c for c in before["cases"] if c["id"] == "dev-na-kosten-arrangement")
    assert "12.500" not in kosten["response"]  # ... which the shipped documents do not

    after = click_run(at)
    assert after["summary"] == before["summary"]
    assert [c for c, _ in page.failing_cases(after)] == failing_before
    assert [(c["id"], c["response"], c["refused"]) for c in after["cases"]] == \
        [(c["id"], c["response"], c["refused"]) for c in before["cases"]]
    assert after["config"]["eval_index"]["documents"] == before["config"]["eval_index"]["documents"]
    assert not (root / "index" / "eval" / "gold" / "corpus" / UPLOAD_NAME).exists()


def test_button_with_a_missing_dataset_is_a_dutch_error(unindexed, tmp_path, monkeypatch):
    at = open_page(monkeypatch, unindexed, tmp_path, **{page.DATASET_ENV: str(tmp_path / "bestaat-niet.jsonl")})
    next(b for b in at.button if b.label == "Evaluatie uitvoeren").click().run()
    assert not at.exception, at.exception
    assert "evaluatievragen konden niet gelezen worden" in at.error[0].value
    assert "bestaat\\-niet\\.jsonl" in at.error[0].value
    assert not (tmp_path / "reports").exists()
    assert not (unindexed / "index" / "chroma").exists()  # checked before any index is touched
    assert not (unindexed / "index" / "eval").exists()


def test_button_without_the_sets_documents_is_a_dutch_error(unindexed, tmp_path, monkeypatch):
    """The corpus folder lacks the factsheet the set is about: no score over part of the documents."""
    dev_subset(tmp_path / "gold.jsonl")
    at = open_page(monkeypatch, unindexed, tmp_path)
    next(b for b in at.button if b.label == "Evaluatie uitvoeren").click().run()
    assert not at.exception, at.exception
    assert "niet in de bronnenmap" in at.error[0].value and "factsheet\\-2021" in at.error[0].value
    assert not (tmp_path / "reports").exists()
    assert not (unindexed / "index" / "eval").exists()


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
