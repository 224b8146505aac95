"""`rag bench`: the command runs and writes every field with the right type.

No timing value is asserted (the machine is shared and noisy); the bench itself reports
ratios measured within one run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CORPUS

from rag.localserver import CHROMIUM

FLOAT_FIELDS = (
    "embed_query_ms", "search_p50_ms", "search_p95_ms", "ask_p50_ms", "ask_p95_ms", "encode_chunks_per_s",
    "reingest_unchanged_s", "peak_rss_mb", "index_mb_per_1k_chunks", "baseline_search_p50_ms", "lines_per_chunk",
    "ask_texts_encoded",
)
# null where vectors are derived
NULLABLE_FIELDS = ("ingest_chunks_per_s", "full_ingest_s", "ingest_ms_per_chunk", "encode_tokens_per_s",
                   "ingest_tokens_per_s")
PHASES = {"parse_clean_s", "chunk_s", "embed_s", "write_s"}
SCALE_FIELDS = {"scale", "chunks", "how", "queries", "pages", "ingest_s_per_page", "ingest_phases_s", *FLOAT_FIELDS,
                *NULLABLE_FIELDS}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_queries_are_many_distinct_dutch_questions(tmp_path: Path) -> None:
    from rag.bench import corpus_material, make_queries
    from rag.config import Settings
    from rag.store import Index

    index = Index(Settings(corpus_dir=CORPUS, index_dir=tmp_path / "index", chroma_url=None))
    queries = make_queries(corpus_material(index, CORPUS), 250)
    assert len(queries) == 250
    assert len({q.lower() for q in queries}) == 250
    assert make_queries(corpus_material(index, CORPUS), 250) == queries  # deterministic


def test_questions_are_the_eval_files_user_inputs_once_each() -> None:
    from rag.bench import DEV_QUESTION_FILES, load_questions

    questions = load_questions(DEV_QUESTION_FILES)
    assert len(questions) >= 100  # real-dev + dev
    assert len({q.casefold() for q in questions}) == len(questions)
    assert "Wat is Skolelinux precies?" in questions
    assert load_questions(DEV_QUESTION_FILES) == questions  # deterministic


def test_derived_vectors_cover_chunks_and_answer_lines(tmp_path: Path) -> None:
    """Synthetic scales store line vectors too, so an ask there encodes only its question."""
    from rag.bench import DerivedEmbeddings, corpus_material, ingest_texts, write_synthetic_corpus
    from rag.chunking import chunk_documents
    from rag.config import Settings
    from rag.store import Index

    index = Index(Settings(corpus_dir=CORPUS, index_dir=tmp_path / "index", chroma_url=None))
    write_synthetic_corpus(tmp_path / "synthetic", corpus_material(index, CORPUS), 40, seed=2)
    loaded, _ = index.load_files([tmp_path / "synthetic"])
    chunks = [c for lf in loaded for c in chunk_documents(lf.documents)]
    stand_in = DerivedEmbeddings(index.embeddings, chunks[:8], batch=64)
    assert stand_in.misclassified == 0
    (texts,) = ingest_texts(chunks[8:16], 64)
    assert len(texts) > 8  # chunks and their lines
    vectors = stand_in.encode(texts, stand_in.passage_prefix)
    assert vectors.shape == (len(texts), stand_in.dimension)
    # each text gets a (perturbed) real vector of its own kind
    assert (vectors[:8] @ stand_in.chunk_base.T).max(axis=1).min() > 0.8
    assert (vectors[8:] @ stand_in.line_base.T).max(axis=1).min() > 0.8


def test_synthetic_corpus_has_the_asked_chunks_and_no_duplicates(tmp_path: Path) -> None:
    from rag.bench import SECTIONS_PER_DOC, corpus_material, write_synthetic_corpus
    from rag.chunking import chunk_documents
    from rag.config import Settings
    from rag.store import Index

    index = Index(Settings(corpus_dir=CORPUS, index_dir=tmp_path / "index", chroma_url=None))
    material = corpus_material(index, CORPUS)
    files = write_synthetic_corpus(tmp_path / "synthetic", material, 400, seed=1)
    loaded, skipped = index.load_files([tmp_path / "synthetic"])
    assert not skipped and len(loaded) == files == 10
    chunks = [c for lf in loaded for c in chunk_documents(lf.documents)]
    assert len(chunks) == files * SECTIONS_PER_DOC
    assert len({c.embed_text for c in chunks}) == len(chunks)
    assert len({c.text for c in chunks}) == len(chunks)


@pytest.mark.slow
def test_bench_writes_every_field_with_the_right_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.cli import main

    monkeypatch.setenv("RAG_CORPUS_DIR", str(CORPUS))
    monkeypatch.delenv("RAG_CHROMA_URL", raising=False)
    monkeypatch.delenv("RAG_LLM", raising=False)
    out = tmp_path / "reports" / "bench.json"
    # Scale 80 with a zero encode budget takes the derived-vector path.
    result = CliRunner().invoke(
        main,
        ["bench", "--scale", "1", "--scale", "80", "--queries", "4", "--encode-budget", "0",
         "--threads", "2", "--no-cli-reingest", "--no-real", "--app", "--job-pages", "0", "--workdir", str(tmp_path / "work"), "--json", str(out)],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "search p95 / embed_query (shipped corpus)" in result.output
    assert "real scale" not in result.output  # --no-real
    assert "concurrency (2 threads" in result.output

    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data) >= {"machine", "commit", "scales"}
    machine = data["machine"]
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert isinstance(machine["python"], str) and machine["python"].count(".") == 2
    assert isinstance(machine["libraries"], dict) and machine["libraries"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in machine["libraries"].items())
    assert {"torch", "chromadb", "sentence-transformers"} <= set(machine["libraries"])
    assert isinstance(data["commit"], str) and data["commit"]

    scales = {row["scale"]: row for row in data["scales"]}
    assert sorted(scales) == [1, 80]
    for row in scales.values():
        assert set(row) == SCALE_FIELDS
        assert isinstance(row["scale"], int) and isinstance(row["chunks"], int) and row["chunks"] > 0
        assert isinstance(row["how"], str) and row["how"]
        for name in FLOAT_FIELDS:
            assert _number(row[name]) and row[name] >= 0, name
        assert set(row["ingest_phases_s"]) == PHASES and all(_number(v) for v in row["ingest_phases_s"].values())
        assert 0 < row["ask_texts_encoded"] <= 1.0  # stored line vectors: an ask encodes only its question
    real, derived = scales[1], scales[80]
    assert real["pages"] is None and real["ingest_s_per_page"] is None  # no PDFs in the shipped corpus
    for name in NULLABLE_FIELDS:
        assert _number(real[name]), name
        assert derived[name] is None, name
    assert derived["chunks"] == 80
    assert "derived" in derived["how"]
    assert data["concurrency"]["errors"] == 0 and data["concurrency"]["threads"] == 2
    assert {t["name"] for t in data["targets"]} >= {"ask p50 / embed_query (shipped corpus)",
                                                    "app: streamlit run -> first answer (s)"}
    assert not (tmp_path / "work" / "scale-1").exists()  # temp indexes are cleaned up
    if not Path(CHROMIUM).is_file():  # only outside CI (.ci/run installs it): the bench says why
        assert "app: not measured" in result.output and "app" not in data
        return
    app = data["app"]  # the real app in Chromium: every figure there, no timing asserted
    for name in ("server_ready_s", "page_ready_s", "first_answer_s", "later_answer_p50_s", "later_answer_max_s",
                 "peak_rss_mb"):
        assert _number(app[name]) and app[name] > 0, name
    assert app["server_ready_s"] <= app["page_ready_s"] <= app["first_answer_s"]
    assert "app: streamlit run -> first answer (s)" in result.output


JOB_FIELDS = {
    "pages": int, "passages": int, "texts_encoded": int, "answer_line_share": float, "queued_to_reading_s": float,
    "reading_s": float, "searchable_s": float, "answerable_s": float, "encode_tokens": int,
    "passage_tokens_per_s": float, "line_tokens_per_s": float, "encoder_tokens_per_s": float, "idle_ask_p50_ms": float,
    "during_ask_p50_ms": float, "during_ratio": float, "asks_during": int, "answerable_with_questions_s": float,
}


def test_bench_job_times_a_generated_pdf_through_a_real_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.cli import main

    monkeypatch.setenv("RAG_CORPUS_DIR", str(CORPUS))
    monkeypatch.delenv("RAG_CHROMA_URL", raising=False)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--job-only", "--job-pages", "3", "--no-app", "--no-cli-reingest",
                                       "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "ingest job, 3-page PDF" in result.output and "searchable" in result.output
    job = json.loads(out.read_text(encoding="utf-8"))["ingest_job"]
    assert set(job) == set(JOB_FIELDS)
    for name, kind in JOB_FIELDS.items():
        assert _number(job[name]) and (kind is float or isinstance(job[name], int)), name
    assert job["pages"] == 3 and job["asks_during"] >= 1
    assert 0 < job["answer_line_share"] < 1 and job["searchable_s"] <= job["answerable_s"]
