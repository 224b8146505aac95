"""An eval's own index (rag.evalindex): only the documents a dataset names, rebuilt only when they change;
and `rag eval --own-index`. Real files, real Chroma, the real embedding model."""

from __future__ import annotations

import json

import pytest
from conftest import copy_corpus, make_settings, store_contents

from rag.evalindex import EvalDocumentsError, eval_root, eval_settings, prepare, referenced_documents
from rag.evaluation import EvalCase, load_dataset
from rag.store import Index

PILOTS = {"id": "fs-pilots", "user_input": "Aan hoeveel pilots werken samenwerkingsverbanden en gemeenten samen?",
          "reference": "Aan meer dan 200 pilots.", "facts": ["200"], "reference_doc_ids": ["factsheet-2021"],
          "answerable": True}
WEATHER = {"id": "weer", "user_input": "Gaat het zaterdag regenen in Amsterdam?", "reference": "", "facts": [],
           "reference_doc_ids": [], "answerable": False}


def case(*doc_ids: str) -> EvalCase:
    return EvalCase("c", "vraag", "", [], list(doc_ids), True)


def write_dataset(path, *cases: dict):
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    return path


@pytest.fixture
def live(tmp_path):
    """The shipped corpus plus an upload, indexed: the live index the app answers from."""
    settings = make_settings(tmp_path, llm="none")
    copy_corpus(settings.corpus_dir)
    (settings.corpus_dir / "upload-2024.md").write_text(
        "# Pilots in onze regio\n\nSamenwerkingsverbanden en gemeenten werken in onze regio samen aan 17 pilots.\n",
        encoding="utf-8")
    Index(settings).ingest()
    return settings


def test_referenced_documents_and_where_the_eval_index_lives(tmp_path):
    assert referenced_documents([case("b", "a"), case(), case("a")]) == ["a", "b"]
    settings = make_settings(tmp_path, chroma_url="http://127.0.0.1:8000")
    root = eval_root(settings, tmp_path / "evals" / "conversations-dev.jsonl")
    assert root == tmp_path / "index" / "eval" / "conversations-dev"
    local = eval_settings(settings, root)
    assert (local.corpus_dir, local.index_dir) == (root / "corpus", root / "index")
    assert local.chroma_url is None  # a local cache, never written to a shared server
    assert local.collection == settings.collection and local.k == settings.k


@pytest.mark.slow
def test_only_the_named_documents_are_indexed_and_only_again_when_they_change(live, tmp_path):
    cases = [case("factsheet-2021"), case()]
    dataset = tmp_path / "evals" / "dev.jsonl"
    first = prepare(live, cases, dataset)
    assert first.documents == [{"doc_id": "corpus/factsheet-2021.md", "title": "Factsheet Aansluiting onderwijs en jeugdhulp 2021"}]
    assert first.changed == ["corpus/factsheet-2021.md"]
    root = live.index_dir / "eval" / "dev"
    assert first.settings.index_dir == root / "index"
    assert sorted(p.name for p in (root / "corpus").iterdir()) == ["factsheet-2021.md"]
    assert [d["name"] for d in Index(live).documents()] == ["factsheet-2021", "projectpagina-2021", "upload-2024"]

    generation = store_contents(first.settings)["generation"]
    copied = (root / "corpus" / "factsheet-2021.md").stat().st_mtime_ns
    (live.corpus_dir / "upload-2025.md").write_text("# Nog een notitie\n\nEr zijn 3 pilots.\n", encoding="utf-8")
    again = prepare(live, cases, dataset)
    assert again.changed == [] and again.documents == first.documents
    assert (root / "corpus" / "factsheet-2021.md").stat().st_mtime_ns == copied  # not copied again
    assert store_contents(first.settings)["generation"] == generation  # nothing written

    factsheet = live.corpus_dir / "factsheet-2021.md"
    factsheet.write_text(factsheet.read_text(encoding="utf-8") + "\nEen regel erbij.\n", encoding="utf-8")
    assert prepare(live, cases, dataset).changed == ["corpus/factsheet-2021.md"]

    both = prepare(live, [case("projectpagina-2021")], dataset)  # the dataset now names another document
    assert [d["doc_id"] for d in both.documents] == ["corpus/projectpagina-2021.md"]
    assert sorted(p.name for p in (root / "corpus").iterdir()) == ["projectpagina-2021.md"]


def test_documents_missing_from_the_corpus_are_an_error(tmp_path):
    settings = make_settings(tmp_path)
    copy_corpus(settings.corpus_dir)
    with pytest.raises(EvalDocumentsError) as err:
        prepare(settings, [case("factsheet-2021", "rapport-2021")], tmp_path / "dev.jsonl")
    assert "rapport-2021" in str(err.value) and "factsheet" not in str(err.value)
    assert "rapport-2021" in err.value.dutch and "bronnenmap" in err.value.dutch
    with pytest.raises(EvalDocumentsError, match="names no documents"):
        prepare(settings, [case()], tmp_path / "dev.jsonl")
    assert not (tmp_path / "index").exists()  # nothing copied or indexed


@pytest.mark.slow
def test_rag_eval_own_index_reports_the_documents_and_ignores_uploads(live, tmp_path):
    from click.testing import CliRunner
    from conftest import subprocess_env

    from rag.cli import main

    dataset = write_dataset(tmp_path / "gold.jsonl", PILOTS, WEATHER)
    env = {**subprocess_env(live), "RAG_LLM": "none", "RAG_CHROMA_URL": ""}
    out = tmp_path / "own.json"
    result = CliRunner().invoke(main, ["eval", "--dataset", str(dataset), "--own-index", "--json", str(out),
                                       "--report", str(out.with_suffix(".md"))], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [d["doc_id"] for d in data["config"]["eval_index"]["documents"]] == ["corpus/factsheet-2021.md"]
    assert data["config"]["dataset"] == str(dataset)
    pilots = data["cases"][0]
    assert not pilots["refused"] and "200" in pilots["response"]
    assert set(pilots["retrieved_doc_ids"]) == {"corpus/factsheet-2021.md"}  # the upload is not in its index
    assert "own index of `corpus/factsheet-2021.md`" in out.with_suffix(".md").read_text(encoding="utf-8")

    live_out = tmp_path / "live.json"  # without the option: the live index, uploads included
    result = CliRunner().invoke(main, ["eval", "--dataset", str(dataset), "--json", str(live_out)], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(live_out.read_text(encoding="utf-8"))
    assert "eval_index" not in data["config"]
    assert "corpus/upload-2024.md" in data["cases"][0]["retrieved_doc_ids"]


def test_rag_eval_own_index_without_the_documents_is_one_line(tmp_path):
    from click.testing import CliRunner
    from conftest import subprocess_env

    from rag.cli import main

    settings = make_settings(tmp_path)
    settings.corpus_dir.mkdir()
    dataset = write_dataset(tmp_path / "gold.jsonl", PILOTS)
    assert load_dataset(dataset)[0].reference_doc_ids == ["factsheet-2021"]
    result = CliRunner().invoke(main, ["eval", "--dataset", str(dataset), "--own-index"],
                                env={**subprocess_env(settings), "RAG_CHROMA_URL": ""})
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error == [f"Error: Dataset {dataset} is about documents that are not in {settings.corpus_dir}: "
                     "factsheet-2021; put them back or evaluate without --own-index."]
    assert "Traceback" not in result.output
