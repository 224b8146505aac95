"""A conditional logit: a softmax over one group's candidates, fit to put mass on its positives.

Both learned rankers use it: the reader (candidate lines of one question) and the passage
fusion (candidate passages of one question). Linear, or linear plus a small tanh layer,
L2-regularised; features are standardised with the training data's mean and scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def standardisation(matrices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the stacked feature rows (scale 1 for a constant feature)."""
    stacked = np.vstack(matrices)
    std = stacked.std(axis=0)
    return stacked.mean(axis=0), np.where(std > 1e-6, std, 1.0)


def scores(matrix: np.ndarray, model: dict) -> np.ndarray:
    """One score per candidate (higher = more likely a positive); comparable within a group."""
    z = (matrix - model["mean"]) / model["scale"]
    out = z @ model["coef"]
    hidden = model.get("hidden")
    if hidden:
        out = out + np.tanh(z @ hidden["w1"] + hidden["b1"]) @ hidden["w2"]
    return out


def fit(groups: list[tuple[np.ndarray, np.ndarray]], mean: np.ndarray, scale: np.ndarray, hidden: int = 0,
        penalty: float = 1.0, seed: int = 0) -> dict:
    """Fit on (feature matrix, positive labels) per group; groups without a positive are skipped.
    Returns {"mean", "scale", "coef"[, "hidden": {"w1", "b1", "w2"}]}."""
    from scipy.optimize import minimize

    stack = Stack.of([((m - mean) / scale, labels) for m, labels in groups if labels.any()])
    d = stack.z.shape[1]
    size = d + (d * hidden + 2 * hidden if hidden else 0)
    theta0 = np.random.default_rng(seed).normal(0, 0.05, size) if hidden else np.zeros(size)
    result = minimize(loss, theta0, args=(stack, d, hidden, penalty), jac=True, method="L-BFGS-B",
                      options={"maxiter": 400})
    coef, layer = _unpack(result.x, d, hidden)
    model = {"mean": mean, "scale": scale, "coef": coef}
    if layer:
        model["hidden"] = {"w1": layer[0], "b1": layer[1], "w2": layer[2]}
    return model


@dataclass
class Stack:
    """All groups' standardised rows in one matrix, with where each group starts."""

    z: np.ndarray
    positive: np.ndarray
    starts: np.ndarray
    group: np.ndarray  # group number of each row

    @classmethod
    def of(cls, groups: list[tuple[np.ndarray, np.ndarray]]) -> "Stack":
        sizes = np.array([len(z) for z, _ in groups])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return cls(np.vstack([z for z, _ in groups]), np.concatenate([p for _, p in groups]).astype(bool), starts,
                   np.repeat(np.arange(len(groups)), sizes))


def _unpack(theta: np.ndarray, d: int, hidden: int):
    coef = theta[:d]
    if not hidden:
        return coef, None
    at = d
    w1 = theta[at : at + d * hidden].reshape(d, hidden)
    at += d * hidden
    b1 = theta[at : at + hidden]
    w2 = theta[at + hidden : at + 2 * hidden]
    return coef, (w1, b1, w2)


def loss(theta, stack: Stack, d: int, hidden: int, penalty: float):
    """Negative log of the probability mass on each group's positives (mean), plus L2; and its gradient."""
    coef, layer = _unpack(theta, d, hidden)
    z = stack.z
    if layer:
        w1, b1, w2 = layer
        h = np.tanh(z @ w1 + b1)
        s = z @ coef + h @ w2
    else:
        s = z @ coef
    s = s - np.maximum.reduceat(s, stack.starts)[stack.group]
    e = np.exp(s)
    total = np.add.reduceat(e, stack.starts)
    pos = np.add.reduceat(np.where(stack.positive, e, 0.0), stack.starts)
    p = e / total[stack.group]
    p_pos = np.maximum(pos / total, 1e-12)
    value = -float(np.log(p_pos).sum())
    # d(-log sum_pos p)/ds = p - p * 1[pos] / p_pos
    ds = p - np.where(stack.positive, p / p_pos[stack.group], 0.0)
    grad = np.zeros_like(theta)
    grad[:d] = z.T @ ds
    if layer:
        dh = np.outer(ds, w2) * (1 - h**2)
        at = d
        grad[at : at + d * hidden] = (z.T @ dh).ravel()
        at += d * hidden
        grad[at : at + hidden] = dh.sum(axis=0)
        grad[at + hidden : at + 2 * hidden] = h.T @ ds
    n = max(len(stack.starts), 1)
    return value / n + penalty * float(theta @ theta) / n, grad / n + 2 * penalty * theta / n
