"""Contacts from attention maps, as ESM does it (Rao et al. 2020; Lin et al. 2023): the features and the
fitted regression that combines them.

For one sequence, every layer's and head's ``(L, L)`` attention matrix (`favor.models.attention_maps`; for
FAVOR+ the model's own implicit matrix, computed for this call only, O(L^2)) is cut to the residues (no
``<cls>``/``<eos>``), symmetrized (``A + A^T``) and APC-corrected (``A - A_i. A_.j / A_..``, the average
product correction that removes the background every row and column shares). A logistic regression with an
L1 penalty combines the ``layers x heads`` values of a pair (fitted by `favor.tasks.attention_contacts`),
stored beside the model as ``contact_regression.safetensors`` + ``contact_regression.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from favor.models.attention_maps import attention_maps
from favor.models.model import SequenceModel

__all__ = [
    "REGRESSION_META",
    "REGRESSION_WEIGHTS",
    "ContactRegression",
    "apc",
    "attention_features",
    "sequence_features",
    "symmetrize",
]

REGRESSION_WEIGHTS = "contact_regression.safetensors"
REGRESSION_META = "contact_regression.json"


def symmetrize(x: torch.Tensor) -> torch.Tensor:
    """``x + x^T`` over the last two dimensions."""
    return x + x.transpose(-1, -2)


def apc(x: torch.Tensor) -> torch.Tensor:
    """Average product correction over the last two dimensions: ``x_ij - x_i. x_.j / x_..``."""
    rows, cols = x.sum(-1, keepdim=True), x.sum(-2, keepdim=True)
    total = x.sum((-1, -2), keepdim=True)
    return x - rows * cols / total.where(total != 0, torch.ones_like(total))


def attention_features(maps: torch.Tensor, residues: slice) -> torch.Tensor:
    """``(layers, heads, T, T)`` maps of one sequence -> ``(L, L, layers * heads)`` pair features over the
    ``residues`` token positions: symmetrized, then APC-corrected, per layer and head."""
    block = maps[..., residues, residues].double()
    corrected = apc(symmetrize(block))  # (layers, heads, L, L)
    n = corrected.shape[-1]
    return corrected.reshape(-1, n, n).permute(1, 2, 0).float()


def sequence_features(model: SequenceModel, ids: torch.Tensor, residues: slice) -> torch.Tensor:
    """`attention_features` of one token row ``ids`` ``(T,)`` (on the model's device); CPU float32 out."""
    device = next(model.parameters()).device
    maps = attention_maps(model, ids[None].to(device))[0].cpu()
    return attention_features(maps, residues)


@dataclass
class ContactRegression:
    """The fitted combination of attention maps: ``sigmoid(features @ weight + bias)``.

    ``info`` records what it was fitted for and on (layers, heads, chains, C, held-out log-loss).
    """

    weight: torch.Tensor  # (layers * heads,)
    bias: float
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, features: torch.Tensor) -> np.ndarray:
        """``(L, L, F)`` features -> ``(L, L)`` contact probabilities (float32)."""
        if features.shape[-1] != self.weight.numel():
            raise ValueError(
                f"the contact regression combines {self.weight.numel()} attention maps; this model has "
                f"{features.shape[-1]} (layers x heads): refit it with favor contacts fit"
            )
        logits = features.double() @ self.weight.double() + self.bias
        return torch.sigmoid(logits).float().numpy()

    def save(self, folder: Path) -> Path:
        """Write the two files into ``folder`` (each written whole, then renamed into place)."""
        folder = Path(folder)
        weights, meta = folder / REGRESSION_WEIGHTS, folder / REGRESSION_META
        tmp_weights, tmp_meta = weights.with_name(f".{weights.name}.tmp"), meta.with_name(f".{meta.name}.tmp")
        save_file(
            {"weight": self.weight.float().contiguous(), "bias": torch.tensor([self.bias])}, tmp_weights
        )
        tmp_meta.write_text(json.dumps(self.info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp_weights, weights)
        os.replace(tmp_meta, meta)
        return weights

    @classmethod
    def load(cls, folder: Path, *, n_layers: int, n_heads: int) -> ContactRegression | None:
        """The regression stored in ``folder``, or None when there is none; a damaged or mismatched one
        raises ``ValueError`` naming the file."""
        weights, meta = Path(folder) / REGRESSION_WEIGHTS, Path(folder) / REGRESSION_META
        if not weights.is_file():
            return None
        try:
            tensors = load_file(weights)
            info = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
        except Exception as error:  # safetensors raises its own error types for damaged files
            raise ValueError(f"{weights}: cannot be read ({error})") from None
        weight, bias = tensors.get("weight"), tensors.get("bias")
        if weight is None or bias is None or weight.ndim != 1 or bias.numel() != 1:
            raise ValueError(f"{weights}: expected tensors 'weight' (F,) and 'bias' (1,)")
        if weight.numel() != n_layers * n_heads:
            raise ValueError(
                f"{weights}: {weight.numel()} weights, but the model has {n_layers} layers x {n_heads} "
                "heads: it was fitted for another model; refit with favor contacts fit"
            )
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise ValueError(f"{weights}: holds NaN or infinite values")
        return cls(weight.float(), float(bias), info if isinstance(info, dict) else {})
