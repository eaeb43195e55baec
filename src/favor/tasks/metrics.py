"""Downstream metrics in numpy: classification, multi-label ranking, per-residue accuracy, contact precision.

Conventions: scores are higher-is-more-likely (logits or probabilities), labels -100 are ignored, and
ties in a ranking are broken by position (a stable sort), so every number is deterministic.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "accuracy",
    "macro_f1",
    "average_precision",
    "multilabel_auprc",
    "fmax",
    "per_residue_accuracy",
    "top_k_precision",
    "contact_precision",
    "interchain_precision",
]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred`` (as scikit-learn's default).

    A class never predicted has precision 0 (not NaN), so its F1 is 0.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.union1d(y_true, y_pred)
    if not len(classes):
        return float("nan")
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as the step sum ``sum_n (R_n - R_{n-1}) P_n``.

    Thresholds are the distinct scores (tied scores enter together), as scikit-learn's
    ``average_precision_score``; NaN when there is no positive.
    """
    y_true = np.asarray(y_true, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y_true.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], y_true[order]
    # The last index of each run of equal scores: one threshold per distinct value.
    last = np.flatnonzero(np.r_[np.diff(sorted_scores) != 0, True])
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_auprc(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(micro, macro) AUPRC of ``(N, C)`` 0/1 labels; macro averages the labels with a positive."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    micro = average_precision(y_true, scores)
    per_label = [average_precision(y_true[:, c], scores[:, c]) for c in range(y_true.shape[1])]
    per_label = [v for v in per_label if not np.isnan(v)]
    return micro, float(np.mean(per_label)) if per_label else float("nan")


def fmax(
    y_true: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray | None = None
) -> tuple[float, float]:
    """Protein-centric Fmax (CAFA): the best F1 over thresholds t, and that t.

    At threshold t, precision is averaged over the proteins with at least one prediction >= t, recall
    over all proteins with at least one true label.
    """
    y_true = np.asarray(y_true, dtype=bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    thresholds = np.linspace(0.01, 0.99, 99) if thresholds is None else thresholds
    annotated = y_true.any(axis=1)
    best, best_t = 0.0, float("nan")
    for t in thresholds:
        predicted = probabilities >= t
        n_pred = predicted.sum(axis=1)
        tp = (predicted & y_true).sum(axis=1)
        covered = n_pred > 0
        if not covered.any() or not annotated.any():
            continue
        precision = float(np.mean(tp[covered] / n_pred[covered]))
        recall = float(np.mean(tp[annotated] / y_true[annotated].sum(axis=1)))
        if precision + recall > 0:
            f = 2 * precision * recall / (precision + recall)
            if f > best:
                best, best_t = f, float(t)
    return best, best_t


def per_residue_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of labelled positions (label != -100) predicted right: Q3 / Q8 over pooled residues."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    keep = y_true != -100
    return float((y_true[keep] == y_pred[keep]).mean()) if keep.any() else float("nan")


def top_k_precision(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of true labels among the ``k`` highest scores (flattened; ties broken by position)."""
    scores, labels = np.asarray(scores).ravel(), np.asarray(labels).ravel()
    if not len(scores):
        return float("nan")
    k = max(1, min(k, len(scores)))
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean())


def contact_precision(
    scores: np.ndarray,
    contacts: np.ndarray,
    *,
    min_separation: int = 24,
    max_separation: int | None = None,
    top: int | None = None,
) -> float:
    """Precision of the top ``top`` (default L/5) pairs ``i < j`` with ``min <= j - i < max`` separation.

    ``scores`` and ``contacts`` are ``(L, L)`` over one chain's residues. NaN when the chain has no pair
    in the separation range (too short), so the caller can leave it out of the average.
    """
    length = scores.shape[0]
    i, j = np.triu_indices(length, k=min_separation)
    if max_separation is not None:
        keep = (j - i) < max_separation
        i, j = i[keep], j[keep]
    if not len(i):
        return float("nan")
    k = max(1, length // 5) if top is None else top
    return top_k_precision(scores[i, j], contacts[i, j], k)


def interchain_precision(scores: np.ndarray, contacts: np.ndarray, *, k: int | None = None) -> float:
    """Precision of the top ``k`` pairs of an ``(L_a, L_b)`` inter-chain block; ``k`` defaults to
    ``max(1, min(L_a, L_b) // 5)``."""
    k = max(1, min(scores.shape) // 5) if k is None else k
    return top_k_precision(scores, contacts, k)
