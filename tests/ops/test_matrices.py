"""The materialised attention matrices are the plain twins of the attention ops: ``matrix @ v`` equals the
op's output, outputs and gradients, with padding, causal masks and every kernel."""

from __future__ import annotations

import pytest
import torch

from favor.ops import (
    favor_attention,
    favor_attention_matrix,
    random_projection,
    softmax_attention,
    softmax_attention_matrix,
)

B, H, L, D = 2, 3, 37, 8


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, D, generator=generator, dtype=torch.float64) * 0.7 for _ in range(3))
    padding = torch.zeros(B, L, dtype=torch.bool)
    padding[1, 25:] = True
    return q, k, v, padding


def _grads(output: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    weights = torch.linspace(-1, 1, output.numel(), dtype=output.dtype).view_as(output)
    return list(torch.autograd.grad((output * weights).sum(), tensors))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel", ["softmax", "softmax_hyperbolic", "relu"])
def test_favor_matrix_times_values_is_favor_attention(kernel, causal):
    q, k, v, padding = _inputs()
    projection = random_projection(16, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    fast = favor_attention(q, k, v, projection, kernel=kernel, causal=causal, key_padding_mask=padding)
    matrix = favor_attention_matrix(q, k, projection, kernel=kernel, causal=causal, key_padding_mask=padding)
    plain = matrix @ v
    real = ~padding[:, None, :, None]
    torch.testing.assert_close(plain * real, fast * real)
    for a, b in zip(_grads(fast * real, q, k, v), _grads(plain * real, q, k, v), strict=True):
        torch.testing.assert_close(a, b)
    assert matrix[1, :, :, 25:].abs().max() == 0  # padded keys carry no weight
    if causal:
        assert matrix.triu(1).abs().max() == 0
    if kernel != "relu":  # positive features: rows are distributions over the visible keys
        assert matrix.min() >= 0
        torch.testing.assert_close(matrix.sum(-1), torch.ones(B, H, L, dtype=torch.float64))


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_matrix_times_values_is_softmax_attention(causal):
    q, k, v, padding = _inputs(2)
    matrix = softmax_attention_matrix(q, k, causal=causal, key_padding_mask=padding)
    expected = softmax_attention(q, k, v, causal=causal, key_padding_mask=padding)
    torch.testing.assert_close(matrix @ v, expected)
    torch.testing.assert_close(matrix.sum(-1), torch.ones(B, H, L, dtype=torch.float64))


def test_favor_matrix_estimates_the_softmax_matrix():
    """Many orthogonal features: the implicit FAVOR+ matrix is close to the exact one (it estimates it)."""
    q, k, _, _ = _inputs(3)
    q, k = q * 0.5, k * 0.5
    exact = softmax_attention_matrix(q, k)
    projection = random_projection(4096, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    estimate = favor_attention_matrix(q, k, projection)
    few = favor_attention_matrix(
        q, k, random_projection(4, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    )
    assert (estimate - exact).abs().mean() < 0.1 * (few - exact).abs().mean()
