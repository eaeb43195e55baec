"""Non-neural baselines, scored on exactly the examples (and windows) the neural models see.

KmerLogisticRegression  function tasks: 1-, 2- and 3-mer composition (20 + 400 + 8000 frequencies of the
                        standard residues) -> L2-regularised logistic regression (softmax, or one sigmoid
                        per term for GO), fitted by full-batch L-BFGS in torch (scikit-learn is not
                        used); the L2 strength is picked on the validation loss.
ResidueStateFrequency   secondary structure: each residue type's most frequent state in training.
SeparationPrior         contacts: P(contact | sequence separation) from training chains.
PairPropensity          inter-chain: P(contact | residue type in A, residue type in B) from training pairs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from favor.data import Alphabet
from favor.tasks.common import Baseline, Encoded

__all__ = [
    "KmerLogisticRegression",
    "ResidueStateFrequency",
    "SeparationPrior",
    "PairPropensity",
    "kmer_features",
]

KMER_SIZES = (1, 2, 3)
# Dense features cost 34 KB per protein; more training proteins than this are subsampled (seeded).
MAX_KMER_EXAMPLES = 20_000


def kmer_features(examples: list[Encoded], alphabet: Alphabet) -> torch.Tensor:
    """``(N, 8420)`` float32: frequencies of the 1/2/3-mers of standard residues in each example's spans.

    k-mers containing a non-standard residue (X, B, ...) are skipped; frequencies divide by the number
    of k-mer positions of the example.
    """
    standard = np.full(alphabet.vocab_size, -1, dtype=np.int64)
    standard[list(alphabet.standard_ids)] = np.arange(len(alphabet.standard_ids))
    n_letters = len(alphabet.standard_ids)
    sizes = [n_letters**k for k in KMER_SIZES]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    features = np.zeros((len(examples), offsets[-1]), dtype=np.float32)
    for row, example in enumerate(examples):
        for a, b in example.spans:
            letters = standard[example.input_ids[a:b].numpy()]
            for size, offset in zip(KMER_SIZES, offsets, strict=False):
                if len(letters) < size:
                    continue
                windows = np.lib.stride_tricks.sliding_window_view(letters, size)  # (n - k + 1, k)
                valid = (windows >= 0).all(axis=1)
                codes = windows[valid] @ (n_letters ** np.arange(size - 1, -1, -1))
                if len(windows):
                    np.add.at(features[row], offset + codes, 1.0 / len(windows))
    return torch.from_numpy(features)


class KmerLogisticRegression(Baseline):
    name = "kmer_logreg"
    description = "k-mer (k=1..3) composition + L2 logistic regression (torch L-BFGS)"

    def __init__(
        self,
        *,
        alphabet: Alphabet,
        num_labels: int,
        multi_label: bool = False,
        l2_grid: tuple[float, ...] = (1e-1, 1e-2, 1e-3),
        max_iter: int = 100,
        seed: int = 0,
    ) -> None:
        self.alphabet, self.num_labels, self.multi_label = alphabet, num_labels, multi_label
        self.l2_grid, self.max_iter, self.seed = l2_grid, max_iter, seed
        self.l2: float | None = None

    def _loss(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        logits = x @ weight + bias
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, y)
        return F.cross_entropy(logits, y)

    def _fit_one(self, x: torch.Tensor, y: torch.Tensor, l2: float, init: tuple[torch.Tensor, torch.Tensor]):
        weight, bias = (t.clone().requires_grad_(True) for t in init)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = self._loss(x, y, weight, bias) + 0.5 * l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return weight.detach(), bias.detach()

    def _targets(self, examples: list[Encoded]) -> torch.Tensor:
        if self.multi_label:
            return torch.stack([e.labels for e in examples]).float()
        return torch.stack([e.labels for e in examples]).long()

    def fit(self, examples: list[Encoded], valid: list[Encoded] | None = None) -> None:
        if len(examples) > MAX_KMER_EXAMPLES:
            keep = np.random.default_rng(self.seed).permutation(len(examples))[:MAX_KMER_EXAMPLES]
            examples = [examples[i] for i in np.sort(keep)]
        x, y = kmer_features(examples, self.alphabet), self._targets(examples)
        # Per-feature scale (no centring): rare 3-mers weigh as much as common residues.
        self.scale = 1.0 / x.std(dim=0).clamp_min(1e-6)
        x = x * self.scale
        init = (torch.zeros(x.shape[1], self.num_labels), torch.zeros(self.num_labels))
        if valid is None or len(self.l2_grid) == 1:
            self.l2 = self.l2_grid[-1] if valid is None else self.l2_grid[0]
            self.weight, self.bias = self._fit_one(x, y, self.l2, init)
            return
        xv, yv = kmer_features(valid, self.alphabet) * self.scale, self._targets(valid)
        best = None
        # From strong to weak regularisation, each fit starting from the previous one.
        for l2 in self.l2_grid:
            init = self._fit_one(x, y, l2, init)
            with torch.no_grad():
                loss = float(self._loss(xv, yv, *init))
            if best is None or loss < best[0]:
                best = (loss, l2, init)
        _, self.l2, (self.weight, self.bias) = best

    def predict(self, examples: list[Encoded]) -> list[np.ndarray]:
        x = kmer_features(examples, self.alphabet) * self.scale
        return list((x @ self.weight + self.bias).numpy())


class ResidueStateFrequency(Baseline):
    name = "residue_majority"
    description = "per-residue-type state frequencies (predicts each residue type's majority state)"

    def __init__(self, *, alphabet: Alphabet, num_labels: int) -> None:
        self.counts = np.zeros((alphabet.vocab_size, num_labels), dtype=np.float64)

    def fit(self, examples: list[Encoded], valid: list[Encoded] | None = None) -> None:
        for example in examples:
            ids, labels = example.input_ids.numpy(), example.labels.numpy()
            keep = labels != -100
            np.add.at(self.counts, (ids[keep], labels[keep]), 1.0)
        smoothed = self.counts + 1.0
        self.log_probs = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))

    def predict(self, examples: list[Encoded]) -> list[np.ndarray]:
        return [self.log_probs[e.input_ids.numpy()] for e in examples]


class SeparationPrior(Baseline):
    name = "separation_prior"
    description = "P(contact | sequence separation) from training chains"

    def fit(self, examples: list[Encoded], valid: list[Encoded] | None = None) -> None:
        longest = max(b - a for e in examples for a, b in e.spans)
        contacts, pairs = np.zeros(longest), np.zeros(longest)
        for example in examples:
            for a, b in example.spans:
                labels = example.labels[a:b, a:b].numpy()
                i, j = np.triu_indices(b - a, k=1)
                keep = labels[i, j] != -100
                separation = (j - i)[keep]
                np.add.at(pairs, separation, 1.0)
                np.add.at(contacts, separation, labels[i, j][keep])
        self.rate = (contacts + 1.0) / (pairs + 2.0)

    def predict(self, examples: list[Encoded]) -> list[np.ndarray]:
        out = []
        for example in examples:
            n = len(example)
            separation = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
            scores = np.zeros((n, n), dtype=np.float32)
            for a, b in example.spans:
                block = separation[a:b, a:b]
                scores[a:b, a:b] = self.rate[np.minimum(block, len(self.rate) - 1)]
            out.append(scores)
        return out


class PairPropensity(Baseline):
    name = "pair_propensity"
    description = "P(contact | residue type pair) over inter-chain pairs of training complexes"

    def __init__(self, *, alphabet: Alphabet) -> None:
        self.vocab = alphabet.vocab_size

    def fit(self, examples: list[Encoded], valid: list[Encoded] | None = None) -> None:
        vocab = self.vocab
        contacts, pairs = np.zeros((vocab, vocab)), np.zeros((vocab, vocab))
        for example in examples:
            (a0, a1), (b0, b1) = example.spans
            ids = example.input_ids.numpy()
            labels = example.labels[a0:a1, b0:b1].numpy()
            rows, cols = np.meshgrid(ids[a0:a1], ids[b0:b1], indexing="ij")
            np.add.at(pairs, (rows, cols), 1.0)
            np.add.at(contacts, (rows, cols), labels)
        # Contacts are symmetric in the two chains: count both orders.
        contacts, pairs = contacts + contacts.T, pairs + pairs.T
        self.rate = (contacts + 1.0) / (pairs + 2.0)

    def predict(self, examples: list[Encoded]) -> list[np.ndarray]:
        out = []
        for example in examples:
            ids = example.input_ids.numpy()
            scores = np.zeros((len(ids), len(ids)), dtype=np.float32)
            (a0, a1), (b0, b1) = example.spans
            block = self.rate[ids[a0:a1][:, None], ids[b0:b1][None, :]]
            scores[a0:a1, b0:b1] = block
            scores[b0:b1, a0:a1] = block.T
            out.append(scores)
        return out
