"""`rag ingest` and `rag search` through click's CliRunner, on a temp corpus and index."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import copy_corpus

from rag.cli import main

pytestmark = pytest.mark.slow

QUESTION = "Welk deel van de gemeenten ervaart knelpunten?"
INGEST_KEYS = {
    "documents": int,
    "chunks_total": int,
    "added": int,
    "removed": int,
    "unchanged": int,
    "skipped": list,
    "replaced": list,
    "notes": list,
    "warnings": list,
    "seconds": float,
}
PASSAGE_KEYS = {"rank", "chunk_id", "doc_id", "name", "title", "section", "page", "text", "score"}


def rag_env(index_dir: Path, corpus_dir: Path, **extra: str) -> dict:
    """CliRunner env: our folders, and every other RAG_* variable of the caller unset."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(index_dir), RAG_CORPUS_DIR=str(corpus_dir), HF_HUB_OFFLINE="1")
    env.update(extra)
    return env


def run(env: dict, *args: str):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)


def assert_usage_error(result, *needles: str) -> None:
    """Exit 2, one `Error: ...` line on stderr, no traceback, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Run from an empty folder so no stray rag.toml is picked up."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, embedder):
    """(env, first ingest result): the corpus copy ingested once through `rag ingest --json`."""
    base = tmp_path_factory.mktemp("cli")
    env = rag_env(base / "index", copy_corpus(base / "corpus"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        result = run(env, "ingest", "--json")
    return env, result


def test_ingest_json_is_one_object(cli_index):
    _, result = cli_index
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    report = json.loads(lines[0])
    assert set(report) == set(INGEST_KEYS)
    for key, kind in INGEST_KEYS.items():
        assert type(report[key]) is kind, (key, report[key])
    assert report["documents"] == 2
    assert report["chunks_total"] > 10
    assert report["added"] == report["chunks_total"]
    assert (report["removed"], report["unchanged"], report["skipped"]) == (0, 0, [])
    assert report["seconds"] >= 0


def test_second_ingest_adds_nothing(cli_index):
    env, first = cli_index
    result = run(env, "ingest", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == 0 and report["removed"] == 0
    assert report["unchanged"] == 2
    assert report["chunks_total"] == json.loads(first.stdout)["chunks_total"]


def test_ingest_text_output_lists_skipped_files(tmp_path, embedder):
    corpus = copy_corpus(tmp_path / "corpus")
    (corpus / "leeg.txt").write_bytes(b"")
    (corpus / "kapot.pdf").write_bytes(b"%PDF-1.4\n" + random.Random(3).randbytes(1024))
    result = run(rag_env(tmp_path / "index", corpus), "ingest")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "2 documents" in result.stdout
    skipped = [ln for ln in result.stderr.splitlines() if ln.startswith("skipped ")]
    assert len(skipped) == 2
    assert any("leeg.txt" in ln and "empty" in ln for ln in skipped)
    assert any("kapot.pdf" in ln and "PDF" in ln for ln in skipped)


def test_ingest_of_nothing_fails(tmp_path, embedder):
    empty = tmp_path / "leeg"
    empty.mkdir()
    result = run(rag_env(tmp_path / "index", empty), "ingest", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["documents"] == 0


def test_search_json(cli_index):
    env, _ = cli_index
    result = run(env, "search", QUESTION, "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) == {"query", "passages"}
    assert data["query"] == QUESTION
    passages = data["passages"]
    assert len(passages) == 5  # RAG_K default
    assert [p["rank"] for p in passages] == [1, 2, 3, 4, 5]
    for p in passages:
        assert set(p) == PASSAGE_KEYS
        assert isinstance(p["chunk_id"], str) and p["chunk_id"].startswith(p["doc_id"] + ":")
        assert isinstance(p["text"], str) and p["text"]
        assert isinstance(p["score"], float)
        assert p["page"] is None or isinstance(p["page"], int)
    assert any(p["name"] == "factsheet-2021" and "91%" in p["text"] for p in passages[:3])


def test_search_k_and_mode(cli_index):
    env, _ = cli_index
    result = run(env, "search", QUESTION, "-k", "2", "--mode", "lexical", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["passages"]) == 2


def test_search_text_output(cli_index):
    env, _ = cli_index
    result = run(env, "search", QUESTION, "-k", "3")
    assert result.exit_code == 0, result.output
    assert "[1] " in result.stdout and "[3] " in result.stdout and "[4] " not in result.stdout
    assert "91%" in result.stdout
    assert "Veel knelpunten" in result.stdout


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_search_empty_question(cli_index, question):
    env, _ = cli_index
    assert_usage_error(run(env, "search", question), "empty")


@pytest.mark.parametrize("k", ["0", "-1", "51", "veel"])
def test_search_bad_k(cli_index, k):
    env, _ = cli_index
    assert_usage_error(run(env, "search", QUESTION, "-k", k))


def test_search_bad_setting_names_it(cli_index):
    env, _ = cli_index
    assert_usage_error(run({**env, "RAG_K": "0"}, "search", QUESTION), "RAG_K")


def test_search_without_index(tmp_path):
    result = run(rag_env(tmp_path / "geen-index", tmp_path), "search", QUESTION)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "rag ingest" in line


def test_search_with_another_model_says_rebuild(cli_index, tmp_path, embedder):
    from rag.config import Settings
    from rag.store import Index

    env, _ = cli_index
    index_dir = tmp_path / "index"
    index = Index(Settings(index_dir=index_dir, corpus_dir=env["RAG_CORPUS_DIR"]), embeddings=embedder)
    index.ingest()
    meta_store = index.stores()[0]  # the model the index says it was built with
    meta = meta_store.read()
    meta.embed_model = "intfloat/multilingual-e5-small"
    meta_store.write(meta)
    result = run({**env, "RAG_INDEX_DIR": str(index_dir)}, "search", QUESTION)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert "rag ingest --rebuild" in line
