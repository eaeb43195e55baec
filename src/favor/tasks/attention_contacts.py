"""Fitting and evaluating contacts from attention (ESM-style; the method: `favor.models.contact_regression`).

`fit_contact_regression` fits the L1-regularized logistic regression over a model's symmetrized,
APC-corrected attention maps on at most 20 training chains of ``contacts/`` (CB-CB < 8 A, pairs at sequence
separation >= 6); `evaluate_contacts` reports P@L, P@L/2 and P@L/5 at short (6-11), medium (12-23) and long
(>= 24) separation for any predictor: attention + regression, a contact model's supervised head (both through
`favor.inference.predict_contacts`) or `random_predictor`, so all are compared alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.inference import InferenceEngine, TaskError
from favor.models.contact_regression import ContactRegression, sequence_features
from favor.tasks.common import select_subset
from favor.tasks.contacts import MIN_SEPARATION, SEPARATION_RANGES, Chain, ChainStore, contact_map
from favor.tasks.metrics import contact_precision

__all__ = [
    "C_GRID",
    "chain_precisions",
    "evaluate_contacts",
    "fit_contact_regression",
    "load_chains",
    "random_predictor",
]

# The L1 strengths tried by `fit_contact_regression` (scikit-learn's C: smaller is sparser).
C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
TOPS = {"l": 1, "l2": 2, "l5": 5}  # P@L, P@L/2, P@L/5


def load_chains(
    root: Path, split: str, *, limit: int | None, max_residues: int, seed: int = 0
) -> list[Chain]:
    """Chains of one split of ``contacts/``, a seeded subset of ``limit`` (None: all), each cut to its
    N-terminal ``max_residues`` (the model's context), as the supervised contact task evaluates."""
    store = ChainStore(root, "contacts")
    ids = sorted(idx for idx, row in store.rows.items() if row["split"] == split)
    if not ids:
        raise ValueError(f"{store.path}: no chains in split {split!r}")
    chains = []
    for i in select_subset(len(ids), limit, seed):
        chain = store.chain(ids[i])
        chains.append(Chain(chain.name, chain.sequence[:max_residues], chain.coords[:max_residues]))
    return chains


def _pairs(length: int, min_separation: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(length, k=min_separation)


def fit_contact_regression(
    engine: InferenceEngine,
    chains: list[Chain],
    *,
    c_grid: tuple[float, ...] = C_GRID,
    held_out: float = 0.25,
    seed: int = 0,
) -> ContactRegression:
    """Fit the L1-regularized logistic regression on ``chains`` (pairs at separation >= 6).

    The strength ``C`` is the one of ``c_grid`` with the lowest log-loss on the last ``held_out`` share of
    the chains (fitted on the rest); the returned regression is then refitted on all of them. Features are
    standardized for the fit and the scaling folded back into the stored weights.
    """
    from sklearn.linear_model import LogisticRegression

    if engine.config.task == "contact":
        raise TaskError(f"{engine.served.path}: a contact model predicts contacts with its own head")
    if len(chains) < 2:
        raise ValueError(f"fitting needs at least 2 chains, got {len(chains)}")
    per_chain = []
    for chain in chains:
        ids = engine.encode(chain.sequence, where=chain.name)
        features = sequence_features(engine.model, ids, slice(1, 1 + len(chain.sequence))).numpy()
        i, j = _pairs(len(chain.sequence), MIN_SEPARATION)
        per_chain.append((features[i, j], contact_map(chain.coords)[i, j]))
    split = max(1, min(len(chains) - 1, round(len(chains) * (1 - held_out))))
    x_fit = np.concatenate([f for f, _ in per_chain[:split]])
    y_fit = np.concatenate([y for _, y in per_chain[:split]])
    x_all = np.concatenate([f for f, _ in per_chain])
    y_all = np.concatenate([y for _, y in per_chain])
    if y_all.all() or not y_all.any():
        raise ValueError("the fitting chains need both contacts and non-contacts")
    mean, std = x_all.mean(0), x_all.std(0)
    std = np.where(std > 0, std, 1.0)

    def fit(x: np.ndarray, y: np.ndarray, c: float) -> Any:
        # liblinear penalizes the intercept as a weight on a constant feature: a large constant makes
        # that penalty negligible, so the probabilities stay calibrated however strong the L1 term.
        model = LogisticRegression(
            C=c, solver="liblinear", intercept_scaling=100.0, max_iter=500, random_state=seed, **_l1()
        )
        return model.fit((x - mean) / std, y)

    losses = {}
    for c in c_grid:
        model = fit(x_fit, y_fit, c)
        for x_held, y_held in per_chain[split:]:
            p = np.clip(model.predict_proba((x_held - mean) / std)[:, 1], 1e-7, 1 - 1e-7)
            losses.setdefault(c, []).append(
                float(-np.mean(y_held * np.log(p) + (1 - y_held) * np.log(1 - p)))
            )
    best = min(c_grid, key=lambda c: np.mean(losses[c]))
    final = fit(x_all, y_all, best)
    weight = final.coef_[0] / std
    bias = float(final.intercept_[0] - np.sum(final.coef_[0] * mean / std))
    config = engine.config
    info = {
        "method": "L1 logistic regression over symmetrized, APC-corrected attention maps (ESM-style)",
        "n_layers": config.n_layers,
        "n_heads": config.n_heads,
        "chains": [c.name for c in chains],
        "pairs": int(len(y_all)),
        "contacts": int(y_all.sum()),
        "min_separation": MIN_SEPARATION,
        "C": best,
        "held_out_log_loss": {str(c): float(np.mean(v)) for c, v in losses.items()},
        "nonzero_weights": int(np.count_nonzero(weight)),
    }
    return ContactRegression(torch.from_numpy(weight).float(), bias, info)


def _l1() -> dict[str, Any]:
    """The L1 penalty in the spelling of the installed scikit-learn (``penalty`` is deprecated from 1.8)."""
    import sklearn

    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    return {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}


def chain_precisions(scores: np.ndarray, contacts: np.ndarray) -> dict[str, float]:
    """P@L, P@L/2, P@L/5 at short (6-11), medium (12-23) and long (>= 24) separation for one chain:
    ``{"p_at_l5_long": ..., ...}`` (NaN where the chain has no pair in a range)."""
    length = len(scores)
    result = {}
    for key, (low, high) in SEPARATION_RANGES.items():
        for name, divisor in TOPS.items():
            result[f"p_at_{name}_{key}"] = contact_precision(
                scores, contacts, min_separation=low, max_separation=high, top=max(1, length // divisor)
            )
    return result


def evaluate_contacts(predict: Callable[[Chain], np.ndarray], chains: list[Chain]) -> dict[str, float | int]:
    """Mean of `chain_precisions` over ``chains`` (chains without pairs in a range left out of it), and
    ``long_range_density`` (the share of long-range pairs in contact: random guessing's precision)."""
    totals: dict[str, list[float]] = {}
    densities = []
    for chain in chains:
        contacts = contact_map(chain.coords)
        for key, value in chain_precisions(predict(chain), contacts).items():
            if not math.isnan(value):
                totals.setdefault(key, []).append(value)
        i, j = _pairs(len(chain.sequence), 24)
        if len(i):
            densities.append(float(contacts[i, j].mean()))
    result: dict[str, float | int] = {key: float(np.mean(v)) for key, v in sorted(totals.items())}
    result["long_range_density"] = float(np.mean(densities)) if densities else float("nan")
    result["chains"] = len(chains)
    return result


def random_predictor(seed: int = 0) -> Callable[[Chain], np.ndarray]:
    """Uniform random symmetric scores: the floor every predictor must beat."""
    generator = np.random.default_rng(seed)

    def predict(chain: Chain) -> np.ndarray:
        scores = generator.random((len(chain.sequence),) * 2)
        return (scores + scores.T) / 2

    return predict
