"""Inter-chain contacts: which residues of chain A touch which of chain B (CB-CB < 8 A).

The two chains go into one input, ``<cls> A <eos> B <eos>`` (``<eos>`` separates proteins as in
concatenated pretraining), and the symmetric pair head's A x B block is the prediction. Pairs come from
``contacts/interchain_pairs.tsv.gz``; only pairs with at least 5 contacts (``n_cb8_contacts`` >= 5) are
used, in every split. Labels are recomputed from the stored float16 coordinates.

Metric: precision of the top k pairs of the A x B block, k = max(1, min(L_a, L_b) // 5), averaged over
chain pairs (also reported for k = 10), next to the contact density of the block (the expected precision
of random guessing). When the two chains do not fit the model together, each is cut to a window centred
on its interface residues (a random interface residue in training, the median one in evaluation): this
uses the labels to place the window, the same way for every model and baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from favor.data import Alphabet
from favor.tasks.common import (
    Baseline,
    Encoded,
    Task,
    encode_residues,
    read_tsv,
    require_file,
    select_subset,
    wrap,
)
from favor.tasks.contacts import Chain, ChainStore, contact_map
from favor.tasks.metrics import interchain_precision

__all__ = ["ChainPair", "InterchainTask", "MIN_PAIR_CONTACTS"]

MIN_PAIR_CONTACTS = 5


@dataclass(frozen=True)
class ChainPair:
    name: str
    a: Chain
    b: Chain


def _interface_window(interface: np.ndarray, length: int, width: int, rng: np.random.Generator | None) -> int:
    """Start of a ``width`` window over ``length`` residues centred on an interface residue."""
    if length <= width:
        return 0
    if not len(interface):
        center = length // 2
    elif rng is None:
        center = int(np.median(interface))
    else:
        center = int(rng.choice(interface))
    return int(np.clip(center - width // 2, 0, length - width))


def _widths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Residues kept of each chain so that both fit in ``budget``; a short chain is kept whole."""
    if len_a + len_b <= budget:
        return len_a, len_b
    half = budget // 2
    if len_a <= half:
        return len_a, budget - len_a
    if len_b <= half:
        return budget - len_b, len_b
    return half, budget - half


class InterchainTask(Task):
    name = "interchain"
    model_task = "contact"
    num_labels = 1
    primary_metric = "precision_at_k"
    description = "inter-chain contacts of two concatenated chains, top-min(La,Lb)/5 precision"

    def load(self, root: Path, split: str, *, limit: int | None = None, seed: int = 0) -> list[ChainPair]:
        self.check_split(split)
        table = require_file(root, "contacts/interchain_pairs.tsv.gz", self.name)
        rows = [
            row
            for row in read_tsv(table)
            if row["split"] == split and int(row["n_cb8_contacts"]) >= MIN_PAIR_CONTACTS
        ]
        store = ChainStore(root, self.name)
        pairs = []
        for i in select_subset(len(rows), limit, seed):
            row = rows[i]
            name = f"{row['pdb_id']}_{row['chain_a']}_{row['chain_b']}"
            pairs.append(ChainPair(name, store.chain(int(row["idx_a"])), store.chain(int(row["idx_b"]))))
        return pairs

    def encode(
        self, record: ChainPair, *, alphabet: Alphabet, max_tokens: int, rng: np.random.Generator | None
    ) -> list[Encoded]:
        a = encode_residues(alphabet, record.a.sequence, record.name)
        b = encode_residues(alphabet, record.b.sequence, record.name)
        contacts = contact_map(record.a.coords, record.b.coords)  # (L_a, L_b)
        width_a, width_b = _widths(len(a), len(b), max_tokens - 3)
        start_a = _interface_window(np.flatnonzero(contacts.any(axis=1)), len(a), width_a, rng)
        start_b = _interface_window(np.flatnonzero(contacts.any(axis=0)), len(b), width_b, rng)
        window_a, window_b = slice(start_a, start_a + width_a), slice(start_b, start_b + width_b)
        input_ids, spans = wrap(alphabet, a[window_a], b[window_b])
        block = torch.from_numpy(contacts[window_a, window_b].astype(np.float32))
        labels = torch.full((len(input_ids), len(input_ids)), -100.0)
        (a0, a1), (b0, b1) = spans
        labels[a0:a1, b0:b1] = block
        labels[b0:b1, a0:a1] = block.T
        return [Encoded(input_ids, labels, spans, record.name)]

    def metrics(self, scores: list[np.ndarray], examples: list[Encoded]) -> dict[str, float]:
        at_k, at_10, density = [], [], []
        for score, example in zip(scores, examples, strict=True):
            (a0, a1), (b0, b1) = example.spans
            block, labels = score[a0:a1, b0:b1], example.labels[a0:a1, b0:b1].numpy() == 1
            at_k.append(interchain_precision(block, labels))
            at_10.append(interchain_precision(block, labels, k=10))
            density.append(float(labels.mean()))
        return {
            "precision_at_k": float(np.mean(at_k)) if at_k else float("nan"),
            "precision_at_10": float(np.mean(at_10)) if at_10 else float("nan"),
            "contact_density": float(np.mean(density)) if density else float("nan"),
            "n": len(at_k),
        }

    def make_baseline(self, alphabet: Alphabet) -> Baseline:
        from favor.tasks.baselines import PairPropensity

        return PairPropensity(alphabet=alphabet)
