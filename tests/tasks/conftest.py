"""Fixtures for the downstream-task tests: a tiny synthetic data root in the shared-data formats, and a
tiny randomly initialised masked LM saved as a model folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from favor.models import ModelConfig, SequenceModel, save_pretrained

LETTERS = "ACDEFGHIKLMNPQRSTVWY"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _random_walk(rng: np.random.Generator, n: int) -> np.ndarray:
    """CB-like coordinates: steps of 3.8 A in random directions, so that contacts occur."""
    steps = rng.normal(size=(n, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, axis=0)


def _write_tsv(path: Path, header: list[str], rows: list[list]) -> None:
    text = "\t".join(header) + "\n" + "".join("\t".join(str(v) for v in row) + "\n" for row in rows)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write(text)


def write_synthetic_root(root: Path, *, per_split: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)

    def sequence(low: int = 20, high: int = 60) -> str:
        return "".join(rng.choice(list(LETTERS), size=int(rng.integers(low, high))))

    for folder in ("proteins", "function", "secondary_structure", "contacts"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    terms = [f"GO:000000{i}" for i in range(5)]
    _write_tsv(
        root / "function/go_mf_terms.tsv", ["term", "name", "count"], [[t, f"term {t}", 10] for t in terms]
    )
    ec, loc, go, chains, coords = [], [], [], [], []
    for split in ("train", "valid", "test"):
        names = [f"{split.upper()}{i:03d}" for i in range(per_split)]
        with gzip.open(root / f"proteins/{split}.fasta.gz", "wt") as handle:
            handle.writelines(f">{name}\n{sequence()}\n" for name in names)
        for i, name in enumerate(names):
            ec.append([name, split, ("hydrolase", "ligase", "lyase")[i % 3]])
            loc.append([name, split, ("nucleus", "vacuole")[i % 2]])
            go.append([name, split, " ".join(sorted({terms[i % 5], terms[(i * 3) % 5]}))])
        ss = []
        for i in range(per_split):
            seq = sequence()
            ss8 = "".join(rng.choice(list("HGIEBTSC"), size=len(seq)))
            ss3 = ss8.translate(str.maketrans("HGIEBTSC", "HHHEECCC"))
            ss.append([f"{split}_{i}", seq, ss8, ss3])
        _write_tsv(root / f"secondary_structure/{split}.tsv.gz", ["id", "sequence", "dssp8", "ss3"], ss)
        for i in range(per_split):
            seq = sequence(30, 70)
            chains.append([len(chains), f"{split[0].upper()}{i:03d}", "A", split, seq, "C" * len(seq)])
            coords.append(_random_walk(rng, len(seq)))
    _write_tsv(root / "function/ec_class.tsv.gz", ["accession", "split", "label"], ec)
    _write_tsv(root / "function/localization.tsv.gz", ["accession", "split", "label"], loc)
    _write_tsv(root / "function/go_mf.tsv.gz", ["accession", "split", "labels"], go)
    pairs = []
    for split in ("train", "valid", "test"):
        for i in range(per_split // 2):
            a, b = sequence(30, 50), sequence(30, 50)
            idx_a, idx_b = len(chains), len(chains) + 1
            walk_a = _random_walk(rng, len(a))
            # Chain B starts next to the middle of chain A: an interface.
            walk_b = _random_walk(rng, len(b)) + walk_a[len(a) // 2] + np.array([4.0, 0.0, 0.0])
            chains.append([idx_a, f"P{split[0]}{i}", "A", split, a, "C" * len(a)])
            chains.append([idx_b, f"P{split[0]}{i}", "B", split, b, "C" * len(b)])
            coords.extend([walk_a, walk_b])
            pairs.append([f"P{split[0]}{i}", "A", idx_a, "B", idx_b, 20, split])
    _write_tsv(
        root / "contacts/chains.tsv.gz", ["idx", "pdb_id", "chain", "split", "sequence", "dssp8"], chains
    )
    _write_tsv(
        root / "contacts/interchain_pairs.tsv.gz",
        ["pdb_id", "chain_a", "idx_a", "chain_b", "idx_b", "n_cb8_contacts", "split"],
        pairs,
    )
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in coords])]).astype(np.int64)
    np.savez(root / "contacts/coords_cb.npz", offsets=offsets, cb=np.concatenate(coords).astype(np.float16))
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return write_synthetic_root(tmp_path_factory.mktemp("shared_data"))


def tiny_config(**changes) -> ModelConfig:
    base = dict(
        task="mlm", vocab_size=29, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_length=48, dropout=0.0,
        attention={"nb_features": 8},
    )  # fmt: skip
    base.update(changes)
    return ModelConfig(**base)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder holding ``model/`` with a random tiny Performer MLM (context 48 tokens)."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    save_pretrained(SequenceModel(tiny_config()), run / "model")
    return run


@pytest.fixture
def shared_root() -> Path:
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"shared downstream data not found at {SHARED}")
    return SHARED
