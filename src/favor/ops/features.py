"""FAVOR+ feature maps phi: R^d -> R^M with phi(q) . phi(k) ~ K(q, k).

Every feature map returns :class:`Features`: a bounded ``base`` and an optional per-row ``log_scale``,
with ``phi(x) = base * exp(log_scale)``. Splitting off the per-row scale is how the attention ops stay
finite for large-norm inputs:

- for queries the per-row scale cancels between numerator and denominator, so only ``base`` is used;
- for keys the scale is folded into the values as a weight ``exp(log_scale - c)``, where the stabilizer
  ``c`` is one value shared by the keys of a (batch, head) (bidirectional) or the running maximum up to
  the key's chunk (causal). A shared constant cancels exactly; a per-key constant would not.

Constant factors such as ``1/sqrt(m)`` cancel in ``D^-1 Q' (K'^T V)`` and are omitted.

Kernels (``x`` is scaled by ``d^-1/4`` first, so that softmax kernels estimate ``exp(q.k / sqrt(d))``):
    softmax             positive features exp(Wx - |x|^2/2)                 (Performer Lemma 1)
    softmax_hyperbolic  exp(-|x|^2/2) [exp(Wx), exp(-Wx)]                   (lower variance)
    softmax_trig        exp(|x|^2/2) [sin(Wx), cos(Wx)]                     (original FAVOR, for comparison)
    relu                relu(Wx) + eps, or relu(x) + eps without projection (generalized attention)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Features", "KERNELS", "feature_map", "RELU_EPSILON"]

# Added to ReLU features so that no query sees an all-zero key set (a zero denominator).
RELU_EPSILON = 1e-3


@dataclass(frozen=True)
class Features:
    """Feature values ``phi(x) = base * exp(log_scale)[..., None]``.

    base: ``(batch, heads, length, nb_features)``, bounded.
    log_scale: ``(batch, heads, length)`` or ``None`` when ``base`` is the feature itself.
    """

    base: torch.Tensor
    log_scale: torch.Tensor | None


def _scaled_projection(projection: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # Scaling W by d^-1/4 is the same as scaling x, on an (m, d) matrix instead of (B, H, L, d).
    head_dim = x.shape[-1]
    if projection.shape[-1] != head_dim:
        raise ValueError(f"projection has {projection.shape[-1]} columns but head_dim is {head_dim}")
    return projection.to(x.dtype) * head_dim**-0.25


def _half_sq_norm(x: torch.Tensor) -> torch.Tensor:
    # |x d^-1/4|^2 / 2, shape (B, H, L)
    return x.pow(2).sum(-1) * (0.5 * x.shape[-1] ** -0.5)


def _exp_features(logits: torch.Tensor, x: torch.Tensor) -> Features:
    """exp(logits - |x|^2/2) with the per-row max of the logits split off into log_scale."""
    # The row max is a constant offset (no gradient): base * exp(log_scale) is exactly exp(logits - |x|^2/2).
    row_max = logits.detach().amax(dim=-1, keepdim=True)
    # In place on the matmul output (not saved by autograd): one pass instead of two.
    base = logits.sub_(row_max).exp_()
    return Features(base=base, log_scale=row_max.squeeze(-1) - _half_sq_norm(x))


def softmax_features(x: torch.Tensor, projection: torch.Tensor) -> Features:
    """Positive random features for the softmax kernel; ``x`` is ``(B, H, L, d)``, projection ``(m, d)``."""
    return _exp_features(x @ _scaled_projection(projection, x).T, x)


def softmax_hyperbolic_features(x: torch.Tensor, projection: torch.Tensor) -> Features:
    """Hyperbolic positive features: the positive map applied to the stacked projection [W; -W]."""
    w = _scaled_projection(projection, x)
    return _exp_features(x @ torch.cat([w, -w]).T, x)


def softmax_trig_features(x: torch.Tensor, projection: torch.Tensor) -> Features:
    """Trigonometric features [sin(Wx), cos(Wx)], scale exp(|x|^2/2) (unbounded variance; for comparison)."""
    wx = x @ _scaled_projection(projection, x).T
    return Features(base=torch.cat([torch.sin(wx), torch.cos(wx)], dim=-1), log_scale=_half_sq_norm(x))


def relu_features(x: torch.Tensor, projection: torch.Tensor | None) -> Features:
    """Generalized attention with f = ReLU: relu(Wx) + eps, or relu(x) + eps when ``projection`` is None."""
    pre = x if projection is None else x @ _scaled_projection(projection, x).T
    return Features(base=torch.relu(pre) + RELU_EPSILON, log_scale=None)


KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor | None], Features]] = {
    "softmax": softmax_features,
    "softmax_hyperbolic": softmax_hyperbolic_features,
    "softmax_trig": softmax_trig_features,
    "relu": relu_features,
}

# Kernels that can run without a projection.
PROJECTION_FREE = frozenset({"relu"})


def feature_map(x: torch.Tensor, projection: torch.Tensor | None, *, kernel: str) -> Features:
    """Apply the named kernel's feature map to ``x`` of shape ``(batch, heads, length, head_dim)``."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    if projection is None and kernel not in PROJECTION_FREE:
        raise ValueError(f"kernel {kernel!r} needs a projection (see favor.ops.random_projection)")
    return KERNELS[kernel](x, projection)
