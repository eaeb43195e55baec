"""The small real protein sample shipped inside the package (``favor/data/sample/``).

Three FASTA files cut from the shared Swiss-Prot (January 2014) splits by ``tools/make_sample.py``,
so quick starts and tests run without the full data: ``train`` (600 sequences), ``valid`` and
``test`` (100 each), all of at most 1,022 residues. See ``sample/README.md`` for credits.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SAMPLE_SPLITS", "sample_path"]

SAMPLE_SPLITS = ("train", "valid", "test")
_SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def sample_path(split: str = "train") -> Path:
    """Path of the bundled sample FASTA file of ``split`` ("train", "valid" or "test")."""
    if split not in SAMPLE_SPLITS:
        raise ValueError(f"sample_path: split={split!r}; choose one of {SAMPLE_SPLITS}")
    path = _SAMPLE_DIR / f"{split}.fasta"
    if not path.is_file():
        raise FileNotFoundError(
            f"sample_path: bundled sample {path} is missing; the package data was not installed "
            "(check [tool.setuptools.package-data] in pyproject.toml)"
        )
    return path
