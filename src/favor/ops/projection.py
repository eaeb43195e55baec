"""Random projections for FAVOR+ feature maps.

Rows of the projection W (shape ``(nb_features, head_dim)``) are Gaussian directions. Orthogonal random
features (Performer, Sec. 2.4) stack ``nb_features // head_dim`` blocks, each the Q factor of the QR
decomposition of a fresh ``head_dim x head_dim`` Gaussian matrix, plus one truncated block for the
remainder. Orthogonality alone would give unit rows; the row norms are then set either to independent
chi(d)-distributed lengths (``norms="chi"``, which keeps every row marginally N(0, I_d) and so the
estimator unbiased) or all to ``sqrt(d)`` (``norms="sqrt_d"``, the regularized variant).

The projection is an explicit tensor: callers own it, store it, and redraw it by calling this function
again with a generator. Nothing here draws randomness behind the caller's back.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NORMS", "random_projection"]

# Row norms of the random projection (the ``norms`` argument): chi draws or sqrt(d) for every row.
NORMS = ("chi", "sqrt_d")


def _orthogonal_block(d: int, generator: torch.Generator | None) -> torch.Tensor:
    gaussian = torch.randn(d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    # Fix the sign ambiguity of QR so the block is Haar-distributed (Mezzadri 2007).
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    # Rows of q^T are orthonormal directions.
    return q.T


def random_projection(
    nb_features: int,
    head_dim: int,
    *,
    orthogonal: bool = True,
    norms: str = "chi",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw a FAVOR+ projection matrix.

    Args:
        nb_features: number of random features m (rows).
        head_dim: dimension d of queries and keys (columns).
        orthogonal: block-orthogonal rows (default) or IID Gaussian rows.
        norms: ``"chi"`` (row norms drawn from chi(d), unbiased) or ``"sqrt_d"`` (all rows of norm sqrt(d)).
            Applies to orthogonal rows; IID rows keep their Gaussian norms unless ``"sqrt_d"`` is asked for.
        generator: a seeded ``torch.Generator`` (CPU) for reproducible draws.
        device, dtype: where and how the result is returned (drawn on CPU in float64, then moved).

    Returns:
        Tensor of shape ``(nb_features, head_dim)``.
    """
    if nb_features < 1 or head_dim < 1:
        raise ValueError(f"nb_features and head_dim must be positive, got {nb_features} and {head_dim}")
    if norms not in NORMS:
        raise ValueError(f"norms must be one of {NORMS}, got {norms!r}")
    dtype = dtype or torch.get_default_dtype()

    if orthogonal:
        blocks = [_orthogonal_block(head_dim, generator) for _ in range(math.ceil(nb_features / head_dim))]
        # (m, d): full blocks, the last one truncated to the remaining rows
        directions = torch.cat(blocks, dim=0)[:nb_features]
        if norms == "chi":
            lengths = torch.randn(nb_features, head_dim, generator=generator, dtype=torch.float64).norm(dim=1)
        else:
            lengths = torch.full((nb_features,), math.sqrt(head_dim), dtype=torch.float64)
        projection = directions * lengths.unsqueeze(1)
    else:
        projection = torch.randn(nb_features, head_dim, generator=generator, dtype=torch.float64)
        if norms == "sqrt_d":
            projection = projection / projection.norm(dim=1, keepdim=True) * math.sqrt(head_dim)
    return projection.to(device=device, dtype=dtype)
