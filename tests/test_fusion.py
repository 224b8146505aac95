"""Passage fusion: the fitted ranker and its RRF fallback, settings override, the fit finds what helps."""

from __future__ import annotations

from rag.config import Settings
from rag.fusion import FusionModel, FusionWeights, fuse, fusion_model, passage_features
from rag.fusion_fit import Rankings, context_recall, first_passage_hits, fit, fit_weights


def test_settings_override_the_fitted_weights(tmp_path):
    fitted = fusion_model(Settings())
    assert fitted == fusion_model(Settings(dense_weight=None))
    assert fitted.ranker is not None, "the shipped model ranks passages with the learned ranker"
    overridden = fusion_model(Settings(lexical_weight=0.0, line_weight=0.5))
    # An explicit weight means reciprocal-rank fusion with it, the fitted values for the rest.
    assert overridden.ranker is None
    assert overridden.weights.lexical == 0.0 and overridden.weights.line == 0.5
    assert overridden.weights.dense == fitted.weights.dense


def test_a_weak_bm25_match_does_not_count():
    dense, lexical = [("a", 0.9), ("b", 0.8)], [("b", 3.0), ("a", 1.0)]
    gated = FusionWeights(1.0, 5.0, 0.0, lexical_gate=0.5)
    assert max(fuse(dense, lexical, [], gated, 60, lexical_strength=0.1).items(), key=lambda kv: kv[1])[0] == "a"
    assert max(fuse(dense, lexical, [], gated, 60, lexical_strength=0.9).items(), key=lambda kv: kv[1])[0] == "b"


def test_passage_features_cover_every_candidate_of_either_retriever():
    dense = [("a", 0.90), ("b", 0.85), ("c", 0.80)]
    lexical = [("d", 6.0), ("a", 3.0)]
    by_line = [("b", 0.92), ("a", 0.88), ("d", 0.80), ("c", 0.75)]
    ids, rows = passage_features(dense, lexical, by_line, strength=0.5)
    assert ids == ["a", "b", "c", "d"] and rows.shape == (4, 6)
    dense_gap, line_gap, bm25_share, bm25_strength = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    assert dense_gap[0] == 0.0 and dense_gap[3] < dense_gap[2] < 0  # d: BM25 only, just under the last dense
    assert line_gap[1] == 0.0 and line_gap[0] < 0
    assert list(bm25_share) == [0.5, 0.0, 0.0, 1.0] and list(bm25_strength) == [0.25, 0.0, 0.0, 0.5]


def _case(dataset, answer, noise_first: bool, strength: float) -> Rankings:
    others = [f"x{i}" for i in range(10)]
    dense = [(answer, 0.9)] + [(o, 0.5) for o in others]
    lexical = [(o, 5.0) for o in others] + [(answer, 1.0)] if noise_first else [(answer, 5.0)] + [(o, 1.0) for o in others]
    return Rankings(dataset, dense, lexical, [], strength, {answer: {0}}, 1)


def test_the_fit_drops_bm25_when_it_only_adds_noise_and_keeps_it_when_it_helps():
    noisy = [_case("users", f"a{i}", noise_first=True, strength=0.1) for i in range(20)]
    weights, recall = fit_weights(noisy, rrf_k=60, k=1)
    assert weights.lexical == 0.0 or weights.lexical_gate > 0.1
    assert recall == {"users": 1.0}
    helpful = [Rankings("docs", [(f"x{j}", 0.9) for j in range(3)] + [(f"a{i}", 0.5)], [(f"a{i}", 9.0)], [], 0.9,
                        {f"a{i}": {0}}, 1) for i in range(20)]
    weights, recall = fit_weights(helpful, rrf_k=60, k=1)
    assert weights.lexical > 0 and recall == {"docs": 1.0}
    assert context_recall(helpful, FusionModel(FusionWeights(1.0, 0.0, 0.0, 0.0)), 60, 1)["docs"] == 0.0


def _mixed_case(dataset: str, i: int) -> Rankings:
    """The answer is the dense runner-up with a strong BM25 match; the dense leader has none.
    Reciprocal ranks cannot tell these apart from questions where BM25 is noise; scores can."""
    answer, leader = f"a{i}", f"l{i}"
    others = [f"o{i}-{j}" for j in range(8)]
    dense = [(leader, 0.86), (answer, 0.85)] + [(o, 0.70 - 0.01 * j) for j, o in enumerate(others)]
    lexical = [(answer, 12.0)] + [(o, 2.0) for o in others] + [(leader, 1.0)]
    by_line = [(leader, 0.88), (answer, 0.87)] + [(o, 0.6) for o in others]
    return Rankings(dataset, dense, lexical, by_line, 0.9, {answer: {0}}, 1)


def test_the_passage_ranker_is_kept_when_it_beats_rrf_on_held_out_datasets():
    cases = [_mixed_case(name, i) for name in ("one", "two", "three") for i in range(15)]
    model, info = fit(cases, rrf_k=60, k=5)
    assert info["method"] == "ranker" and model.ranker is not None
    assert first_passage_hits(cases, model, 60) == {"one": 1.0, "two": 1.0, "three": 1.0}
    assert info["ranker_out_of_fold_first_passage_hits_per_dataset"]["one"] == 1.0
    # What dense retrieval alone finds is kept per tuning file, beside the fitted figures.
    assert set(info["dense_only_context_recall_per_dataset"]) == {"one", "two", "three"}
    assert first_passage_hits(cases, FusionModel(FusionWeights(1.0, 0.0, 0.0, 0.0)), 60)["one"] == 0.0


def test_rrf_ranks_when_the_ranker_does_not_win_held_out():
    # Every dataset's answer is simply the dense leader: RRF finds it, the ranker cannot do better.
    cases = [Rankings(name, [(f"a{i}", 0.9), (f"b{i}", 0.5)], [], [], 0.0, {f"a{i}": {0}}, 1)
             for name in ("one", "two") for i in range(5)]
    cases += [Rankings("two", [(f"c{i}", 0.9), (f"d{i}", 0.5)], [], [], 0.0, {f"d{i}": {0}}, 1) for i in range(5)]
    model, info = fit(cases, rrf_k=60, k=1)
    assert info["method"] == "rrf" and model.ranker is None
    assert model.fuse([("p", 0.9), ("q", 0.5)], [], [], 60, 0.0)["p"] > model.fuse([("p", 0.9), ("q", 0.5)], [], [], 60, 0.0)["q"]


def test_the_ranker_ranks_without_lines_or_bm25_matches():
    """An index built before lines were stored has no best-line ranking; a question with no
    BM25 match has no lexical ranking: the ranker still orders the dense candidates."""
    model = fusion_model(Settings())
    dense = [("a", 0.90), ("b", 0.70), ("c", 0.60)]
    scores = model.fuse(dense, [], [], 60, 0.0)
    assert sorted(scores, key=scores.get, reverse=True) == ["a", "b", "c"]
    assert abs(sum(scores.values()) - 1.0) < 1e-9
    assert model.fuse([], [], [], 60, 0.0) == {}
