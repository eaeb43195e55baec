"""Non-neural baselines: features by hand, fitted values by hand, and every task's baseline end to end."""

import numpy as np
import pytest
import torch

from favor.data import Alphabet
from favor.tasks import get_task
from favor.tasks.baselines import (
    KmerLogisticRegression,
    ResidueStateFrequency,
    SeparationPrior,
    kmer_features,
)
from favor.tasks.common import Encoded, wrap

ALPHABET = Alphabet.protein()


def _example(sequence: str, labels=None) -> Encoded:
    ids, spans = wrap(ALPHABET, ALPHABET.encode_array(sequence))
    return Encoded(ids, labels if labels is not None else torch.tensor(0), spans, sequence)


def test_kmer_features_by_hand():
    features = kmer_features([_example("ACA")], ALPHABET)[0]
    a, c = "ACDEFGHIKLMNPQRSTVWY".index("A"), "ACDEFGHIKLMNPQRSTVWY".index("C")
    assert features[a] == pytest.approx(2 / 3) and features[c] == pytest.approx(1 / 3)
    assert features[20 + 20 * a + c] == pytest.approx(0.5) and features[20 + 20 * c + a] == pytest.approx(0.5)
    assert features[420 + 400 * a + 20 * c + a] == pytest.approx(1.0)
    assert features.sum() == pytest.approx(3.0)
    # k-mers through a non-standard residue are skipped.
    assert kmer_features([_example("AXA")], ALPHABET)[0][420:].sum() == 0


def test_residue_majority_predicts_each_types_most_frequent_state():
    labels = torch.tensor([-100, 0, 0, 1, 2, -100])  # residues A A C D
    baseline = ResidueStateFrequency(alphabet=ALPHABET, num_labels=3)
    baseline.fit([_example("AACD", labels)])
    (scores,) = baseline.predict([_example("DCA")])
    assert scores.shape == (5, 3)
    assert scores[1:4].argmax(axis=1).tolist() == [2, 1, 0]


def test_separation_prior_ranks_frequent_separations_first():
    n = 40
    labels = torch.full((n + 2, n + 2), -100.0)
    block = torch.zeros(n, n)
    idx = torch.arange(n - 30)
    block[idx, idx + 30] = 1.0  # every separation-30 pair is a contact
    block = torch.maximum(block, block.T)
    labels[1 : n + 1, 1 : n + 1] = block
    baseline = SeparationPrior()
    baseline.fit([_example("A" * n, labels)])
    (scores,) = baseline.predict([_example("A" * n)])
    assert scores[1, 31] > scores[1, 30] and scores[1, 31] > scores[1, 32]


@pytest.mark.parametrize("name", ["ec", "go_mf", "ss8", "contacts", "interchain"])
def test_baselines_fit_and_score(synthetic_root, name):
    task = get_task(name)
    train = task.encode_all(task.load(synthetic_root, "train"), alphabet=ALPHABET, max_tokens=64)
    test = task.encode_all(task.load(synthetic_root, "test"), alphabet=ALPHABET, max_tokens=64)
    baseline = task.make_baseline(ALPHABET)
    baseline.fit(train, test)
    scores = baseline.predict(test)
    assert len(scores) == len(test)
    metrics = task.metrics(scores, test)
    assert 0.0 <= metrics[task.primary_metric] <= 1.0
    assert np.all(np.isfinite(np.concatenate([s.ravel() for s in scores])))


def test_logistic_regression_matches_scikit_learn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = rng.integers(0, 3, 60)
    l2 = 0.1
    model = KmerLogisticRegression(alphabet=ALPHABET, num_labels=3, max_iter=500)
    init = (torch.zeros(5, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    weight, bias = model._fit_one(torch.from_numpy(x), torch.from_numpy(y), l2, init)
    # Mean loss + l2/2 |W|^2 is scikit-learn's C * sum loss + 1/2 |W|^2 with C = 1 / (l2 N).
    reference = linear_model.LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10, max_iter=10_000).fit(x, y)
    ours = torch.softmax(torch.from_numpy(x) @ weight + bias, dim=-1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(x), atol=1e-4)
