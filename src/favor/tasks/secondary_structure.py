"""Per-residue secondary structure: 3 states (H, E, C) or the 8 DSSP states (H G I E B T S C).

Records come from ``secondary_structure/{split}.tsv.gz`` (id, sequence, dssp8, ss3). Q3 / Q8 is the share
of residues predicted right, pooled over all residues of the split. Evaluation tiles each chain into
consecutive windows that fit the model, so every residue is scored once; an 8-state model also reports
Q3 of its predictions mapped to 3 states (H,G,I -> H; E,B -> E; T,S,C -> C).
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
from favor.tasks.metrics import per_residue_accuracy

__all__ = ["Structure", "SecondaryStructureTask", "SS3_STATES", "SS8_STATES", "SS8_TO_SS3"]

SS3_STATES = "HEC"
SS8_STATES = "HGIEBTSC"
SS8_TO_SS3 = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E", "T": "C", "S": "C", "C": "C"}


@dataclass(frozen=True)
class Structure:
    name: str
    sequence: str
    states: str


class SecondaryStructureTask(Task):
    model_task = "token_classification"

    def __init__(self, *, states: str) -> None:
        if states not in (SS3_STATES, SS8_STATES):
            raise ValueError(f"states must be {SS3_STATES!r} or {SS8_STATES!r}, got {states!r}")
        self.states = states
        self.eight = states == SS8_STATES
        self.name = "ss8" if self.eight else "ss3"
        self.num_labels = len(states)
        self.primary_metric = "q8" if self.eight else "q3"
        self.description = f"secondary structure, {len(states)} states per residue"
        self._table = np.full(256, -1, dtype=np.int64)
        for i, state in enumerate(states):
            self._table[ord(state)] = i

    def load(self, root: Path, split: str, *, limit: int | None = None, seed: int = 0) -> list[Structure]:
        self.check_split(split)
        path = require_file(root, f"secondary_structure/{split}.tsv.gz", self.name)
        column = "dssp8" if self.eight else "ss3"
        rows = list(read_tsv(path))
        records = []
        for i in select_subset(len(rows), limit, seed):
            row = rows[i]
            if len(row["sequence"]) != len(row[column]):
                raise ValueError(
                    f"{path}: {row['id']}: sequence has {len(row['sequence'])} residues, "
                    f"{column} {len(row[column])} states"
                )
            records.append(Structure(row["id"], row["sequence"], row[column]))
        return records

    def state_ids(self, states: str, name: str) -> np.ndarray:
        ids = self._table[np.frombuffer(states.encode("ascii"), dtype=np.uint8)]
        if (ids < 0).any():
            bad = int(np.flatnonzero(ids < 0)[0])
            raise ValueError(
                f"{name}: state {states[bad]!r} at position {bad + 1} is not one of {self.states}"
            )
        return ids

    def encode(
        self, record: Structure, *, alphabet: Alphabet, max_tokens: int, rng: np.random.Generator | None
    ) -> list[Encoded]:
        residues = encode_residues(alphabet, record.sequence, record.name)
        states = self.state_ids(record.states, record.name)
        width = max_tokens - 2
        if rng is not None:
            starts = [int(rng.integers(0, len(residues) - width + 1))] if len(residues) > width else [0]
        else:
            starts = list(range(0, len(residues), width))
        examples = []
        for start in starts:
            input_ids, spans = wrap(alphabet, residues[start : start + width])
            labels = torch.full((len(input_ids),), -100, dtype=torch.long)
            a, b = spans[0]
            labels[a:b] = torch.from_numpy(states[start : start + width])
            name = record.name if len(starts) == 1 else f"{record.name}/{start + 1}"
            examples.append(Encoded(input_ids, labels, spans, name))
        return examples

    def metrics(self, scores: list[np.ndarray], examples: list[Encoded]) -> dict[str, float]:
        y_pred = np.concatenate([s.argmax(axis=-1) for s in scores])
        y_true = np.concatenate([e.labels.numpy() for e in examples])
        key = "q8" if self.eight else "q3"
        result = {key: per_residue_accuracy(y_true, y_pred), "n_residues": int((y_true != -100).sum())}
        if self.eight:
            to3 = np.array(["HEC".index(SS8_TO_SS3[s]) for s in self.states] + [-100])
            # Index -1 of `to3` maps the -100 labels to -100.
            result["q3"] = per_residue_accuracy(to3[np.where(y_true < 0, -1, y_true)], to3[y_pred])
        return result

    def make_baseline(self, alphabet: Alphabet) -> Baseline:
        from favor.tasks.baselines import ResidueStateFrequency

        return ResidueStateFrequency(alphabet=alphabet, num_labels=self.num_labels)
