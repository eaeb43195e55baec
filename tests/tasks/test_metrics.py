"""Metrics against hand-computed examples."""

import math

import numpy as np
import pytest

from favor.tasks.metrics import (
    accuracy,
    average_precision,
    contact_precision,
    fmax,
    interchain_precision,
    macro_f1,
    multilabel_auprc,
    per_residue_accuracy,
    top_k_precision,
)


def test_accuracy_and_macro_f1_by_hand():
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    assert accuracy(y_true, y_pred) == pytest.approx(3 / 5)
    # class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 2, fp 1 -> 0.8; class 2: never right -> 0.
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_counts_a_class_only_predicted():
    # Class 3 never occurs but is predicted once: F1 0 enters the mean.
    assert macro_f1(np.array([0, 0]), np.array([0, 3])) == pytest.approx((2 / 3 + 0.0) / 2)


def test_average_precision_by_hand_and_with_ties():
    # Positives at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    # All scores tied: one threshold, precision = prevalence.
    assert average_precision([1, 0, 1, 0], [0.5] * 4) == pytest.approx(0.5)
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_average_precision_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)  # many ties
    assert average_precision(y, s) == pytest.approx(sklearn.average_precision_score(y, s))


def test_multilabel_auprc_macro_skips_labels_without_positives():
    y = np.array([[1, 0, 0], [0, 1, 0]])
    s = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4]])
    micro, macro = multilabel_auprc(y, s)
    assert macro == pytest.approx(1.0)
    # Flattened ranking: 0.9(+) 0.8(+) 0.4 0.3 0.2 0.1 -> AP 1.
    assert micro == pytest.approx(1.0)


def test_fmax_by_hand():
    y = np.array([[1, 0, 0], [0, 1, 1]])
    p = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.6]])
    best, threshold = fmax(y, p)
    assert best == pytest.approx(1.0)
    assert 0.3 < threshold <= 0.6
    # Everything predicted: precision (1/3 + 2/3) / 2 = 0.5, recall 1 -> F = 2/3.
    low, _ = fmax(y, p, thresholds=np.array([0.01]))
    assert low == pytest.approx(2 / 3)


def test_per_residue_accuracy_ignores_minus_100():
    assert per_residue_accuracy(np.array([0, 1, 2, -100]), np.array([0, 1, 0, 2])) == pytest.approx(2 / 3)


def test_top_k_precision_breaks_ties_by_position():
    assert top_k_precision(np.array([1.0, 1.0, 0.0]), np.array([0, 1, 1]), 1) == 0.0


def test_long_range_top_l5_precision_by_hand():
    length = 30
    scores = np.zeros((length, length))
    contacts = np.zeros((length, length), dtype=bool)
    # A high score close to the diagonal must not count (separation 2 < 24).
    scores[3, 5] = 100.0
    # L/5 = 6 pairs with separation >= 24 get the top scores; 3 of them are contacts.
    top_pairs = [(0, 24), (0, 25), (1, 26), (2, 27), (3, 28), (5, 29)]
    for rank, (i, j) in enumerate(top_pairs):
        scores[i, j] = 10.0 - rank
    for i, j in top_pairs[:3]:
        contacts[i, j] = True
    contacts[0, 29] = True  # a contact the model ranked low
    assert contact_precision(scores, contacts) == pytest.approx(0.5)
    assert math.isnan(contact_precision(np.zeros((20, 20)), np.zeros((20, 20), dtype=bool)))


def test_interchain_top_k_precision_by_hand():
    scores = np.zeros((10, 20))
    contacts = np.zeros((10, 20), dtype=bool)
    scores[0, 0], scores[5, 7] = 3.0, 2.0
    contacts[5, 7] = True
    # k = min(10, 20) // 5 = 2: one of the two best pairs is a contact.
    assert interchain_precision(scores, contacts) == pytest.approx(0.5)
    assert interchain_precision(scores, contacts, k=10) == pytest.approx(0.1)
