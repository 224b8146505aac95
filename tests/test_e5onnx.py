"""The ONNX builds made by `make install` from the bundled weights: the opt-in int8 encoder (`RAG_EMBED_MODEL=e5-int8`)
and the checks both builds share (the default one is tested in test_embeddings.py)."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
from conftest import make_settings

from rag import e5onnx
from rag import embeddings as emb
from rag.answering import Assistant
from rag.errors import ConfigError, IndexMismatchError
from rag.store import Index

pytestmark = pytest.mark.slow

PASSAGES = [
    "91% van de gemeenten ervaart knelpunten in de samenwerking met het onderwijs.",
    "Het samenwerkingsverband verdeelt het budget voor extra ondersteuning over de scholen.",
    "De wijkcoach van de gemeente schuift aan bij het zorgadviesteam van de school.",
    "Aptitude is een pakketbeheerder met een tekstinterface voor Debian.",
]


@pytest.fixture(scope="module")
def int8():
    return emb.get_embeddings("e5-int8")


def test_the_int8_model_is_made_at_install_and_needs_no_torch_to_run(int8):
    assert isinstance(int8, e5onnx.OnnxE5Embeddings) and int8.model_name == e5onnx.ONNX_NAME
    assert (e5onnx.default_dir() / e5onnx.MODEL_FILE).is_file()
    vectors = int8.encode(PASSAGES, int8.passage_prefix)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert int8.encode([], int8.query_prefix).shape == (0, 384)
    # A 600-word text is cut at the model's 512 tokens, not refused.
    assert int8.encode(["jeugdhulp " * 600], int8.passage_prefix).shape == (1, 384)


def test_int8_vectors_are_the_bundled_models_within_quantisation(int8, embedder):
    a = embedder.encode(PASSAGES, embedder.passage_prefix)
    b = int8.encode(PASSAGES, int8.passage_prefix)
    assert float((a * b).sum(axis=1).min()) > 0.98
    assert [embedder.token_count(t, embedder.passage_prefix) for t in PASSAGES] == \
        [int8.token_count(t, int8.passage_prefix) for t in PASSAGES]
    # Both find the same passage for a paraphrased Dutch and an English question.
    for question, expected in (("Hoeveel gemeenten lopen tegen problemen aan met scholen?", 0),
                               ("Who joins the school's care team?", 2)):
        assert int(np.argmax(b @ int8.encode([question], int8.query_prefix)[0])) == expected
        assert int(np.argmax(a @ embedder.encode([question], embedder.query_prefix)[0])) == expected


def test_an_index_built_with_int8_answers_and_refuses_the_other_model(tmp_path, int8):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "zonnedorp.md").write_text(
        "# Pilots in Zonnedorp\n\nIn 2024 liepen in Zonnedorp 37 pilots waarin school en jeugdhulp samenwerkten.\n\n"
        "## Resultaat\n\nDe pilots verkortten de wachttijd voor jeugdhulp van twaalf naar vier weken.\n",
        encoding="utf-8")
    settings = make_settings(tmp_path, embed_model="e5-int8")
    Index(settings).ingest()
    answer = Assistant(settings, index=Index(settings).open()).ask("Hoeveel pilots liepen er in Zonnedorp?")
    assert "37 pilots" in answer.text
    with pytest.raises(IndexMismatchError):
        Index(make_settings(tmp_path)).open()  # the default model may not read int8 vectors


def test_a_damaged_or_missing_int8_model_is_refused_with_the_fix(tmp_path, monkeypatch):
    folder = tmp_path / "e5-int8"
    shutil.copytree(e5onnx.default_dir(), folder)
    with (folder / e5onnx.MODEL_FILE).open("r+b") as handle:
        handle.seek(100_000)
        byte = handle.read(1)
        handle.seek(100_000)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ConfigError, match="does not match"):
        e5onnx.OnnxE5Embeddings(folder)
    with pytest.raises(ConfigError, match="make install") as missing:
        e5onnx.OnnxE5Embeddings(tmp_path / "nowhere")
    assert "make install" in missing.value.dutch


def test_a_build_from_an_older_recipe_is_refused(tmp_path):
    folder = tmp_path / "e5-onnx"
    shutil.copytree(e5onnx.default_dir(), folder)
    manifest = folder / e5onnx.MANIFEST_FILE
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(f'"recipe": {e5onnx.RECIPE}', '"recipe": 1'),
                        encoding="utf-8")
    for exact in (True, False):
        with pytest.raises(ConfigError, match="older than this code"):
            e5onnx.OnnxE5Embeddings(folder, exact=exact)


def test_the_default_path_never_loads_torch():
    import subprocess

    code = ("import sys; from rag.embeddings import get_embeddings; e = get_embeddings('default'); e.encode(['x']); "
            "print(type(e).__name__, sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'onnx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "OnnxE5Embeddings []"


def test_texts_are_encoded_in_runs_of_similar_length_within_a_token_budget():
    lengths = [3, 500, 40, 40, 41, 7, 200, 120, 5, 600]
    ids = [[1] * n for n in lengths]
    runs = e5onnx._runs(ids, most=4)
    assert sorted(i for run in runs for i in run) == list(range(len(ids)))
    for run in runs:
        widest = max(lengths[i] for i in run)
        assert len(run) <= 4 and (len(run) == 1 or len(run) * widest <= e5onnx.TOKENS_PER_RUN)
        assert [lengths[i] for i in run] == sorted(lengths[i] for i in run)
    assert [lengths[i] for i in runs[0]] == [3, 5, 7, 40]  # short texts share a run
    assert [500] in [[lengths[i] for i in run] for run in runs]  # a long one runs alone


def test_runs_side_by_side_give_each_text_its_own_vector_in_order(embedder):
    # Many texts of mixed length: several model runs in flight at once (RUNS_AT_ONCE threads).
    texts = [p + " " + "extra woorden " * (i % 7) * 9 for i, p in enumerate(PASSAGES * 6)]
    ids = embedder._ids(texts, embedder.passage_prefix)
    assert len(e5onnx._runs(ids, embedder.batch_size)) >= 4
    together = embedder.encode(texts, embedder.passage_prefix)
    alone = np.vstack([embedder.encode([t], embedder.passage_prefix) for t in texts])
    assert np.allclose(together, alone, atol=2e-3), np.abs(together - alone).max()
