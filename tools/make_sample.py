"""Build the small protein sample bundled in ``src/favor/data/sample/`` (deterministic).

    python tools/make_sample.py [--data ../shared/data/proteins] [--out src/favor/data/sample]

- train.fasta: the first 600 records of ``sample.fasta`` (1,000 train sequences of at most 1,022
  residues, already in SHA-256 order).
- valid.fasta / test.fasta: the 100 records of at most 1,022 residues with the smallest
  SHA-256(accession) from ``valid.fasta.gz`` / ``test.fasta.gz``.

Splits are the shared data's sequence-identity cluster splits, so the three files share no cluster.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
from pathlib import Path

from favor.data.fasta import read_fasta, write_fasta

MAX_RESIDUES = 1022
N_TRAIN = 600
N_EVAL = 100


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode("ascii")).hexdigest()


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=repo.parent / "shared" / "data" / "proteins")
    parser.add_argument("--out", type=Path, default=repo / "src" / "favor" / "data" / "sample")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    train = list(itertools.islice(read_fasta(args.data / "sample.fasta"), N_TRAIN))
    if any(len(r) > MAX_RESIDUES for r in train):
        raise SystemExit("sample.fasta holds a sequence longer than 1,022 residues; expected none")
    splits = {"train": train}
    for split in ("valid", "test"):
        short = [r for r in read_fasta(args.data / f"{split}.fasta.gz") if len(r) <= MAX_RESIDUES]
        splits[split] = sorted(short, key=lambda r: _sha(r.name))[:N_EVAL]
    for split, records in splits.items():
        path = args.out / f"{split}.fasta"
        n = write_fasta(records, path)
        residues = sum(len(r) for r in records)
        print(f"{path}: {n} sequences, {residues} residues, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
