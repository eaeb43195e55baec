"""Sequential digits: handwritten-digit images read pixel by pixel, a many-to-one sequence classification set.

scikit-learn ships the UCI "Optical Recognition of Handwritten Digits" test set inside its wheel
(``sklearn.datasets.load_digits``: 1,797 images of 8x8 pixels, 16 grey levels, 10 classes), so it loads
offline. Each image becomes a sequence of 64 grey levels in [-1, 1] in row-major order, the small sibling
of the sequential-MNIST / Long Range Arena "image" benchmarks: the model sees one pixel per step and must
classify the digit from the whole sequence. Neither statsmodels nor scikit-learn ships a natively sequential
labelled set, hence this one.

Splits are a seeded stratified shuffle (fixed seed, independent of the training seed): every class keeps
its share in train, valid and test.
"""

from __future__ import annotations

import numpy as np

from favor.data.seeding import derive_seed

__all__ = ["DIGITS_LENGTH", "DIGITS_CLASSES", "load_digits_split"]

DIGITS_LENGTH = 64
DIGITS_CLASSES = 10
# Fixed, so that every run (whatever train.seed) is evaluated on the same test images.
_SPLIT_SEED = 88


def load_digits_split(
    part: str, *, valid_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(values float32 (N, 64, 1), labels int64 (N,))`` of ``part`` (train, valid or test)."""
    if part not in ("train", "valid", "test"):
        raise ValueError(f"part {part!r}: choose train, valid or test")
    from sklearn.datasets import load_digits

    data = load_digits()
    # Grey levels 0..16 mapped to [-1, 1] by a fixed map (no statistics of any split): inputs of unit scale
    # let the linear input projection tell images apart from the start.
    values = (data.data / 8.0 - 1.0).astype(np.float32)[..., None]  # (N, 64, 1)
    labels = data.target.astype(np.int64)
    rng = np.random.default_rng(derive_seed(_SPLIT_SEED))
    chosen: list[np.ndarray] = []
    for label in range(DIGITS_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(members) * test_fraction)
        n_valid = round(len(members) * valid_fraction)
        parts = {
            "test": members[:n_test],
            "valid": members[n_test : n_test + n_valid],
            "train": members[n_test + n_valid :],
        }
        chosen.append(parts[part])
    index = np.sort(np.concatenate(chosen))
    if len(index) == 0:
        raise ValueError(f"the digits {part} part is empty for these split fractions")
    return values[index], labels[index]
