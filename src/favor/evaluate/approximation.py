"""Approximation error of FAVOR+ against exact softmax attention (Performer, Fig. 4 and Lemma 2).

For given q, k, v (or Gaussian ones from `gaussian_qkv`) and a feature variant, draw the projection
``draws`` times and measure, per draw:

- ``output``: MSE of the attention output,
  ``mean((favor_attention(q, k, v) - softmax_attention(q, k, v))^2)``;
- ``matrix``: MSE of the row-normalized attention matrix ``D^-1 Q' K'^T`` against
  ``softmax(q k^T / sqrt(d))``.

Variants are compared at the same feature dimension ``m`` (the columns of ``phi(x)``, i.e. the cost of the
attention): positive features use m projection rows; hyperbolic ``[exp(Wx), exp(-Wx)]`` and trigonometric
``[sin(Wx), cos(Wx)]`` use m / 2 rows, each row giving two features. All computation is float64 by default,
so the measured error is the estimator's, not rounding.

Layout: q, k, v ``(batch, heads, length, head_dim)``; the error is averaged over every entry.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from favor.ops import (
    favor_attention,
    favor_attention_matrix,
    random_projection,
    softmax_attention,
    softmax_attention_matrix,
)

__all__ = [
    "VARIANTS",
    "ErrorStats",
    "Variant",
    "approximation_error",
    "exact_reference",
    "favor_attention_matrix",
    "gaussian_qkv",
    "model_qkv",
    "softmax_attention_matrix",
    "sweep",
]


@dataclass(frozen=True)
class Variant:
    """A feature map and projection kind: ``kernel`` as in `favor.ops.feature_map`, orthogonal or IID rows."""

    name: str
    kernel: str
    orthogonal: bool

    @property
    def rows_per_feature(self) -> float:
        """Projection rows per feature column: 1 for positive features, 1/2 for the two-sided maps."""
        return 1.0 if self.kernel in ("softmax", "relu") else 0.5


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("positive-orthogonal", "softmax", True),
        Variant("positive-iid", "softmax", False),
        Variant("hyperbolic-orthogonal", "softmax_hyperbolic", True),
        Variant("hyperbolic-iid", "softmax_hyperbolic", False),
        Variant("trig-orthogonal", "softmax_trig", True),
        Variant("trig-iid", "softmax_trig", False),
    )
}


@dataclass(frozen=True)
class ErrorStats:
    """Per-draw errors of one (variant, m) cell; ``matrix`` is empty when it was not measured."""

    variant: str
    nb_features: int
    output: tuple[float, ...]
    matrix: tuple[float, ...]

    @property
    def output_mean(self) -> float:
        return statistics.fmean(self.output)

    @property
    def output_std(self) -> float:
        return statistics.stdev(self.output) if len(self.output) > 1 else 0.0

    @property
    def matrix_mean(self) -> float:
        return statistics.fmean(self.matrix) if self.matrix else float("nan")

    @property
    def matrix_std(self) -> float:
        return statistics.stdev(self.matrix) if len(self.matrix) > 1 else 0.0


def gaussian_qkv(
    length: int,
    head_dim: int,
    *,
    std: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k with i.i.d. N(0, std^2) entries and v with N(0, 1) entries, each ``(1, 1, length, head_dim)``.

    With ``std = 1`` the logits ``q.k / sqrt(d)`` have unit variance and ``|q| ~ sqrt(d)``: the scale a
    LayerNorm-ed model produces. Larger ``std`` probes Lemma 2 (error growing like ``exp(|q + k|^2)``).
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (1, 1, length, head_dim)
    q, k, v = (torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(3))
    return (q * std).to(dtype), (k * std).to(dtype), v.to(dtype)


@torch.inference_mode()
def model_qkv(
    model: torch.nn.Module, ids: torch.Tensor, *, layer: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The queries, keys and values one attention layer of a trained model computes for ``ids``.

    Args:
        model: a `favor.models.SequenceModel` whose backbone has attention blocks (performer, transformer).
        ids: token ids ``(batch, length)``.
        layer: block index (negative counts from the end).
        dtype: returned dtype (float64: measure the estimator, not rounding).

    Returns:
        q, k, v ``(batch, heads, length, head_dim)`` as the layer's attention sees them (after the
        input projection and rotary positions, before any feature map).
    """
    blocks = getattr(model.backbone, "blocks", None)
    if blocks is None or not hasattr(blocks[0], "attention"):
        raise ValueError(f"backbone {model.config.backbone!r} has no attention layers")
    if not -len(blocks) <= layer < len(blocks):
        raise ValueError(f"layer {layer} is out of range for {len(blocks)} blocks")
    attention = blocks[layer].attention
    captured: list[torch.Tensor] = []
    hook = attention.register_forward_hook(lambda module, args, out: captured.append(args[0]))
    was_training = model.training
    try:
        model.eval()
        model(ids)
    finally:
        hook.remove()
        model.train(was_training)
    q, k, v = attention._split_heads(captured[0])
    return q.to(dtype), k.to(dtype), v.to(dtype)


def exact_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, matrix: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Exact attention output and (when ``matrix``) the exact attention matrix, for `approximation_error`."""
    return softmax_attention(q, k, v), softmax_attention_matrix(q, k) if matrix else None


def _projection_rows(variant: Variant, nb_features: int) -> int:
    rows = int(nb_features * variant.rows_per_feature)
    if rows < 1:
        raise ValueError(f"nb_features={nb_features} is too small for variant {variant.name!r}")
    return rows


def approximation_error(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    nb_features: int,
    variant: Variant | str = "positive-orthogonal",
    draws: int = 15,
    seed: int = 0,
    matrix: bool = True,
    reference: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> ErrorStats:
    """MSE of FAVOR+ against exact attention over ``draws`` projections, for one variant and m.

    Args:
        q, k, v: ``(batch, heads, length, head_dim)``, any source (Gaussian or taken from a model).
        nb_features: feature dimension m (see the module docstring for the rows each variant draws).
        variant: a `Variant` or a key of `VARIANTS`.
        draws: independent projections; draw i uses ``torch.Generator().manual_seed(seed + i)``.
        matrix: also measure the attention-matrix MSE (memory ``batch * heads * L^2``).
        reference: ``(exact output, exact matrix or None)`` from `exact_reference`, to reuse across calls.
    """
    variant = VARIANTS[variant] if isinstance(variant, str) else variant
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rows = _projection_rows(variant, nb_features)
    exact_out, exact_matrix = reference if reference is not None else exact_reference(q, k, v, matrix=matrix)
    if matrix and exact_matrix is None:
        raise ValueError("matrix=True needs a reference with the exact matrix")
    output_errors, matrix_errors = [], []
    for i in range(draws):
        projection = random_projection(
            rows,
            q.shape[-1],
            orthogonal=variant.orthogonal,
            generator=torch.Generator().manual_seed(seed + i),
            dtype=q.dtype,
        )
        out = favor_attention(q, k, v, projection, kernel=variant.kernel)
        output_errors.append((out - exact_out).pow(2).mean().item())
        if matrix:
            estimate = favor_attention_matrix(q, k, projection, kernel=variant.kernel)
            matrix_errors.append((estimate - exact_matrix).pow(2).mean().item())
            del estimate
    return ErrorStats(variant.name, nb_features, tuple(output_errors), tuple(matrix_errors))


def sweep(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    feature_counts: Sequence[int] = (16, 32, 64, 128, 256, 512),
    variants: Sequence[Variant | str] = tuple(VARIANTS),
    draws: int = 15,
    seed: int = 0,
    matrix: bool = True,
) -> list[ErrorStats]:
    """`approximation_error` for every (variant, m); draw seeds are shared across variants and m."""
    reference = exact_reference(q, k, v, matrix=matrix)
    return [
        approximation_error(
            q,
            k,
            v,
            nb_features=m,
            variant=variant,
            draws=draws,
            seed=seed,
            matrix=matrix,
            reference=reference,
        )
        for variant in variants
        for m in feature_counts
    ]
