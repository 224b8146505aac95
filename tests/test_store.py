"""The store as the one source of truth: processes on one `chroma run` server agree without a
restart, a document is never half-visible, it is searchable before its answer lines are done,
and an index built by the previous release (SQLite catalog) is migrated by one command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, copy_corpus, make_settings, store_contents, subprocess_env

from rag.answering import Assistant
from rag.chunking import CHUNKER_VERSION
from rag.retrieval import HybridSearcher
from rag.store import Index

KNELPUNTEN = "Hoeveel procent van de gemeenten ervaart knelpunten?"
ZONNEDORP = "Hoeveel pilots telt de Zonnedorpse aanpak?"
ZONNEDORP_TEXT = (
    "# Zonnedorpse aanpak\n\n## Pilots\n\n"
    "De Zonnedorpse aanpak van thuiszitters telt 37 pilots in de regio Zonnedorp.\n"
    "Elke pilot koppelt een school aan een jeugdhulpaanbieder.\n"
)
# The release before the store moved into Chroma: its index is a SQLite catalog beside Chroma.
SQLITE_CATALOG_VERSION = "ed64083b19a4281319809a0bfb40a6de6c1a66e8"
DEADLINE_S = 30  # generous: the check runs at most once a second


def _rag(settings, *args: str, **env: str) -> subprocess.CompletedProcess:
    cwd = Path(settings.index_dir).parent
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], env=subprocess_env(settings, **env),
                          capture_output=True, text=True, timeout=600, check=False, cwd=cwd)


def _ask_json(settings, question: str, **env: str) -> dict:
    done = _rag(settings, "ask", "--json", question, **env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return json.loads(done.stdout)


def _cited(answer: dict) -> set[str]:
    return {c["doc_id"] for c in answer["citations"]}


def _until(check, deadline: float = DEADLINE_S):
    """Poll `check()` until it returns something true; that value, or the last one at the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.2)


def test_two_processes_on_one_chroma_server_agree_without_restart(chroma_server, tmp_path, embedder):
    """`rag ingest` through A, `rag ask` through B (each with its own empty RAG_INDEX_DIR), and a
    long-running Assistant C that sees every later upload and delete without a restart."""
    collection = f"t-{uuid.uuid4().hex[:10]}"
    server = {"RAG_CHROMA_URL": chroma_server, "RAG_COLLECTION": collection}
    corpus = copy_corpus(tmp_path / "corpus")
    a = make_settings(tmp_path / "a", corpus_dir=corpus)
    b = make_settings(tmp_path / "b", corpus_dir=corpus)

    ingested = _rag(a, "ingest", "--json", **server)
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    assert json.loads(ingested.stdout)["documents"] == 2
    answer = _ask_json(b, KNELPUNTEN, **server)
    assert "91%" in answer["answer"] and "corpus/factsheet-2021.md" in _cited(answer)
    assert not (tmp_path / "b" / "index" / "chroma").exists()  # B keeps only caches

    c_settings = make_settings(tmp_path / "c", corpus_dir=corpus, chroma_url=chroma_server, collection=collection)
    c = Assistant(c_settings, index=Index(c_settings, embeddings=embedder).open())
    assert "91%" in c.ask(KNELPUNTEN).text
    generation = store_contents(c_settings)["generation"]

    # An upload through A (a new file in the shared corpus folder) is answered by B and by C.
    (corpus / "zonnedorp-2024.md").write_text(ZONNEDORP_TEXT, encoding="utf-8")
    assert _rag(a, "ingest", str(corpus / "zonnedorp-2024.md"), **server).returncode == 0
    assert "37 pilots" in _ask_json(b, ZONNEDORP, **server)["answer"]
    answered = _until(lambda: "37 pilots" in c.ask(ZONNEDORP).text)
    assert answered, "C did not see the new document"
    assert store_contents(c_settings)["generation"] > generation

    # A document deleted through A is gone from B and from C.
    (corpus / "factsheet-2021.md").unlink()
    removed = _rag(a, "ingest", "--json", **server)
    assert removed.returncode == 0 and json.loads(removed.stdout)["documents"] == 2, removed.stderr[-2000:]
    after = _ask_json(b, KNELPUNTEN, **server)
    assert "corpus/factsheet-2021.md" not in _cited(after) and "91%" not in after["answer"]
    gone = _until(lambda: "corpus/factsheet-2021.md" not in {d["doc_id"] for d in c.index.documents()}
                  and all(p.doc_id != "corpus/factsheet-2021.md" for p in c.ask(KNELPUNTEN).passages))
    assert gone, "C still lists or answers from the deleted document"


def test_chunks_of_an_uncommitted_document_are_never_retrieved_and_are_cleaned_up(make_index):
    settings, index = make_index()
    (settings.corpus_dir / "zonnedorp-2024.md").write_text(ZONNEDORP_TEXT, encoding="utf-8")

    class Crash(Exception):
        pass

    def crash_after_vectors(stage, done, total, name):
        if stage == "embedding" and done and done == total:  # vectors stored, record not yet committed
            raise Crash()

    with pytest.raises(Crash):
        index.ingest(on_event=crash_after_vectors)
    contents = store_contents(settings)
    assert contents["pending"] and "corpus/zonnedorp-2024.md" not in contents["docs"]
    orphans = set(contents["stored"]) - set(contents["catalog"])
    assert orphans and all(o.startswith("corpus/zonnedorp-2024.md:") for o in orphans)
    fresh = Index(settings, embeddings=index.embeddings).open()
    searcher = HybridSearcher(fresh)
    for mode in ("hybrid", "dense", "lexical"):
        assert all(p.doc_id != "corpus/zonnedorp-2024.md" for p in searcher.search(ZONNEDORP, 10, mode=mode))
    assert fresh.get_chunks(orphans) == {}

    report = index.ingest()  # the next ingest deletes the orphans and then adds the document whole
    assert report.documents == 3
    contents = store_contents(settings)
    assert not contents["pending"] and sorted(contents["stored"]) == sorted(contents["catalog"])
    assert "37 pilots" in Assistant(settings, index=Index(settings, embeddings=index.embeddings).open()).ask(ZONNEDORP).text


def test_a_document_is_searchable_before_its_answer_lines_are_done(make_index, embedder):
    settings, index = make_index()
    (settings.corpus_dir / "zonnedorp-2024.md").write_text(ZONNEDORP_TEXT, encoding="utf-8")
    seen: dict = {}
    stages: list[str] = []

    def on_event(stage, done, total, name):
        stages.append(stage)
        if stage == "searchable" and name == "corpus/zonnedorp-2024.md":
            reader = Index(settings, embeddings=embedder).open()  # another reader, mid-ingest
            doc = next(d for d in reader.documents() if d["doc_id"] == name)
            passages = HybridSearcher(reader).search(ZONNEDORP, 3)
            seen["state"] = doc["state"]
            assert any(p.doc_id == name for p in passages)
            seen["lines"] = [cid for cid, _ in store_contents(settings)["lines"].values() if cid.startswith(name)]
            seen["answer"] = Assistant(settings, index=reader).ask(ZONNEDORP).text  # from the chunk text

    index.ingest(on_event=on_event)
    assert seen["state"] == "searchable" and seen["lines"] == []  # none stored yet
    assert "37 pilots" in seen["answer"]
    assert stages.index("searchable") < stages.index("lines") < stages.index("ready")
    doc = next(d for d in Index(settings).documents() if d["doc_id"] == "corpus/zonnedorp-2024.md")
    assert doc["state"] == "ready" and doc["added_at"] > 0 and doc["pages"] is None


def test_an_index_of_the_sqlite_release_is_migrated_by_one_command_keeping_its_vectors(tmp_path):
    """Build a real index with the release before this one, then `rag migrate` it."""
    old = tmp_path / "old"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", SQLITE_CATALOG_VERSION, "src"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {SQLITE_CATALOG_VERSION[:7]} is not in this clone (shallow?)")
    old.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    settings = make_settings(tmp_path)
    copy_corpus(settings.corpus_dir)
    built = _rag(settings, "ingest", "--json", PYTHONPATH=str(old / "src"))
    assert built.returncode == 0, built.stderr[-2000:]
    assert (settings.index_dir / "catalog.sqlite").is_file()
    chunks = json.loads(built.stdout)["chunks_total"]

    migrated = _rag(settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    assert migrated.stdout.startswith("Migrated the index") and f"{chunks} chunks" in migrated.stdout
    assert not (settings.index_dir / "catalog.sqlite").exists()
    assert (settings.index_dir / "catalog.sqlite.migrated").is_file()
    contents = store_contents(settings)
    assert sorted(contents["catalog"]) == sorted(contents["stored"]) and len(contents["catalog"]) == chunks
    assert all(d.state == "ready" for d in contents["docs"].values())
    assert {cid for cid, _ in contents["lines"].values()} == set(contents["catalog"])
    assert "91%" in _ask_json(settings, KNELPUNTEN)["answer"]
    again = _rag(settings, "migrate")
    assert again.returncode == 0 and again.stdout.startswith("Nothing to migrate")
    report = json.loads(_rag(settings, "ingest", "--json").stdout)
    if f'CHUNKER_VERSION = "{CHUNKER_VERSION}"' not in (old / "src/rag/chunking.py").read_text():
        # The chunker changed since that release: the migrated documents are re-chunked once.
        assert (report["unchanged"], report["removed"]) == (0, 0) and report["added"] > 0
        report = json.loads(_rag(settings, "ingest", "--json").stdout)
    assert (report["unchanged"], report["added"], report["removed"]) == (2, 0, 0)  # nothing to encode again


def test_remove_takes_a_document_out_whole(make_index):
    settings, index = make_index()
    before = store_contents(settings)
    assert index.remove(["corpus/factsheet-2021.md", "corpus/bestaat-niet.md"]) == 1
    after = store_contents(settings)
    assert set(after["docs"]) == {"corpus/projectpagina-2021.md"} and after["generation"] == before["generation"] + 1
    assert sorted(after["stored"]) == sorted(after["catalog"])
    assert {cid for cid, _ in after["lines"].values()} == set(after["catalog"])
    assert all(p.doc_id != "corpus/factsheet-2021.md" for p in HybridSearcher(index).search(KNELPUNTEN, 10))
