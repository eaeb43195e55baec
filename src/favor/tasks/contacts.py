"""Intra-chain residue contacts from CB coordinates.

A contact is a residue pair with CB-CB distance < 8 A (``contacts/coords_cb.npz``, float16 stored, read
as float32). Training labels cover every pair with sequence separation >= 6; the headline metric is the
precision of the top L/5 long-range pairs (separation >= 24), L the number of residues scored, averaged
over chains. Chains longer than the model's context are cut to one window (random in training, the
N-terminal window in evaluation), and L is then the window's length.
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
from favor.tasks.metrics import contact_precision

__all__ = ["Chain", "ChainStore", "ContactTask", "CONTACT_DISTANCE", "MIN_SEPARATION", "contact_map"]

CONTACT_DISTANCE = 8.0
# Pairs closer in sequence than this are trivially near in space: never labelled, never scored.
MIN_SEPARATION = 6
SEPARATION_RANGES = {"short": (6, 12), "medium": (12, 24), "long": (24, None)}


@dataclass(frozen=True)
class Chain:
    """One PDB chain: ``coords`` are the (virtual) CB positions ``(L, 3)`` float32 in Angstrom."""

    name: str
    sequence: str
    coords: np.ndarray


def contact_map(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``(L_a, L_b)`` bool: CB-CB distance < 8 A between the rows of ``a`` and ``b`` (``b = a`` if None)."""
    b = a if b is None else b
    distances = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)  # (L_a, L_b)
    return distances < CONTACT_DISTANCE


class ChainStore:
    """``contacts/chains.tsv.gz`` rows and ``coords_cb.npz``: chains by row index ``idx``."""

    def __init__(self, root: Path, task: str) -> None:
        table = require_file(root, "contacts/chains.tsv.gz", task)
        coords = require_file(root, "contacts/coords_cb.npz", task)
        self.rows = {int(row["idx"]): row for row in read_tsv(table)}
        with np.load(coords) as data:
            self.offsets = data["offsets"]
            self.cb = data["cb"]
        self.path = coords

    def chain(self, idx: int) -> Chain:
        row = self.rows.get(idx)
        if row is None or idx + 1 >= len(self.offsets):
            raise ValueError(f"{self.path}: no chain with idx {idx}")
        coords = self.cb[self.offsets[idx] : self.offsets[idx + 1]].astype(np.float32)
        if len(coords) != len(row["sequence"]):
            raise ValueError(
                f"{self.path}: chain idx {idx} has {len(coords)} coordinates "
                f"for {len(row['sequence'])} residues"
            )
        return Chain(f"{row['pdb_id']}_{row['chain']}", row["sequence"], coords)


class ContactTask(Task):
    name = "contacts"
    model_task = "contact"
    num_labels = 1
    primary_metric = "precision_at_l5_long"
    description = "intra-chain contacts (CB-CB < 8 A), top-L/5 long-range precision"

    def load(self, root: Path, split: str, *, limit: int | None = None, seed: int = 0) -> list[Chain]:
        self.check_split(split)
        store = ChainStore(root, self.name)
        ids = sorted(idx for idx, row in store.rows.items() if row["split"] == split)
        return [store.chain(ids[i]) for i in select_subset(len(ids), limit, seed)]

    def encode(
        self, record: Chain, *, alphabet: Alphabet, max_tokens: int, rng: np.random.Generator | None
    ) -> list[Encoded]:
        residues = encode_residues(alphabet, record.sequence, record.name)
        width = max_tokens - 2
        start = (
            0 if len(residues) <= width or rng is None else int(rng.integers(0, len(residues) - width + 1))
        )
        window = slice(start, start + width)
        input_ids, spans = wrap(alphabet, residues[window])
        contacts = contact_map(record.coords[window])
        n = len(contacts)
        near = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) < MIN_SEPARATION
        block = np.where(near, -100.0, contacts.astype(np.float32))
        labels = torch.full((len(input_ids), len(input_ids)), -100.0)
        a, b = spans[0]
        labels[a:b, a:b] = torch.from_numpy(block.astype(np.float32))
        return [Encoded(input_ids, labels, spans, record.name)]

    def metrics(self, scores: list[np.ndarray], examples: list[Encoded]) -> dict[str, float]:
        values: dict[str, list[float]] = {f"precision_at_l5_{k}": [] for k in SEPARATION_RANGES}
        values["precision_at_l_long"] = []
        densities = []
        for score, example in zip(scores, examples, strict=True):
            a, b = example.spans[0]
            block, labels = score[a:b, a:b], example.labels[a:b, a:b].numpy() == 1
            for key, (low, high) in SEPARATION_RANGES.items():
                values[f"precision_at_l5_{key}"].append(
                    contact_precision(block, labels, min_separation=low, max_separation=high)
                )
            values["precision_at_l_long"].append(
                contact_precision(block, labels, min_separation=24, top=max(1, b - a))
            )
            i, j = np.triu_indices(b - a, k=24)
            if len(i):
                densities.append(float(labels[i, j].mean()))
        result = {key: _nanmean(v) for key, v in values.items()}
        result["long_range_density"] = _nanmean(densities)
        result["n"] = sum(not np.isnan(v) for v in values["precision_at_l5_long"])
        return result

    def make_baseline(self, alphabet: Alphabet) -> Baseline:
        from favor.tasks.baselines import SeparationPrior

        return SeparationPrior()


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")
