"""Fusion weights: fitted data, settings override them, the fit finds what helps."""

from __future__ import annotations

from rag.config import Settings
from rag.fusion import FusionWeights, fuse, fusion_weights
from rag.fusion_fit import Rankings, context_recall, fit


def test_settings_override_the_fitted_weights(tmp_path):
    fitted = fusion_weights(Settings())
    assert fitted == fusion_weights(Settings(dense_weight=None))
    overridden = fusion_weights(Settings(lexical_weight=0.0, line_weight=0.5))
    assert overridden.lexical == 0.0 and overridden.line == 0.5 and overridden.dense == fitted.dense


def test_a_weak_bm25_match_does_not_count():
    dense, lexical = [("a", 0.9), ("b", 0.8)], [("b", 3.0), ("a", 1.0)]
    gated = FusionWeights(1.0, 5.0, 0.0, lexical_gate=0.5)
    assert max(fuse(dense, lexical, [], gated, 60, lexical_strength=0.1).items(), key=lambda kv: kv[1])[0] == "a"
    assert max(fuse(dense, lexical, [], gated, 60, lexical_strength=0.9).items(), key=lambda kv: kv[1])[0] == "b"


def _case(dataset, answer, noise_first: bool, strength: float) -> Rankings:
    others = [f"x{i}" for i in range(10)]
    dense = [(answer, 0.9)] + [(o, 0.5) for o in others]
    lexical = [(o, 5.0) for o in others] + [(answer, 1.0)] if noise_first else [(answer, 5.0)] + [(o, 1.0) for o in others]
    return Rankings(dataset, dense, lexical, [], strength, {answer: {0}}, 1)


def test_the_fit_drops_bm25_when_it_only_adds_noise_and_keeps_it_when_it_helps():
    noisy = [_case("users", f"a{i}", noise_first=True, strength=0.1) for i in range(20)]
    weights, info = fit(noisy, rrf_k=60, k=1)
    assert weights.lexical == 0.0 or weights.lexical_gate > 0.1
    assert info["context_recall"] == 1.0
    helpful = [Rankings("docs", [(f"x{j}", 0.9) for j in range(3)] + [(f"a{i}", 0.5)], [(f"a{i}", 9.0)], [], 0.9,
                        {f"a{i}": {0}}, 1) for i in range(20)]
    weights, info = fit(helpful, rrf_k=60, k=1)
    assert weights.lexical > 0 and info["context_recall"] == 1.0
    assert context_recall(helpful, FusionWeights(1.0, 0.0, 0.0, 0.0), 60, 1)["docs"] == 0.0
    # What dense retrieval alone finds is kept per tuning file, beside the fitted figure.
    assert info["dense_only_context_recall_per_dataset"] == {"docs": 0.0}
    assert info["context_recall_per_dataset"] == {"docs": 1.0}
