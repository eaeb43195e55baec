"""FAVOR+ cross-attention: the context form against its explicit-matrix twin, exact source padding, and
the source context made once then read piece by piece."""

import pytest
import torch

from favor.ops import (
    favor_cross_attention,
    favor_cross_context,
    favor_cross_read,
    naive_favor_cross_attention,
    random_projection,
)

B, H, LQ, LK, D, M = 2, 3, 5, 7, 4, 16


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, n, D, generator=g, dtype=torch.float64) for n in (LQ, LK, LK))
    projection = random_projection(M, D, generator=g, dtype=torch.float64)
    return q, k, v, projection


def _grads(fn, *tensors):
    tensors = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*tensors)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    (out * weights).sum().backward()
    return out.detach(), [t.grad for t in tensors]


@pytest.mark.parametrize("kernel", ["softmax", "softmax_hyperbolic", "relu"])
def test_fast_equals_explicit_matrix_twin(kernel):
    q, k, v, projection = _inputs()
    padding = torch.zeros(B, LK, dtype=torch.bool)
    padding[1, -3:] = True

    def run(op):
        return _grads(
            lambda a, b, c: op(a, b, c, projection, kernel=kernel, key_padding_mask=padding),
            q,
            k,
            v,
        )

    (fast, fast_grads), (naive, naive_grads) = run(favor_cross_attention), run(naive_favor_cross_attention)
    torch.testing.assert_close(fast, naive, rtol=1e-10, atol=1e-12)
    for a, b in zip(fast_grads, naive_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op", [favor_cross_attention, naive_favor_cross_attention], ids=["fast", "twin"])
def test_padded_source_equals_the_source_without_its_padding(op):
    q, k, v, projection = _inputs(1)
    real = 4  # row 1 has 4 real source positions, then padding holding large values
    padding = torch.zeros(B, LK, dtype=torch.bool)
    padding[1, real:] = True
    k, v = k.clone(), v.clone()
    k[1, :, real:] = 50.0
    v[1, :, real:] = -1e3

    def padded(a, b, c):
        return op(a, b, c, projection, key_padding_mask=padding)[1]

    def trimmed(a, b, c):
        return op(a[1:], b[1:, :, :real], c[1:, :, :real], projection)[0]

    out_padded, grads_padded = _grads(padded, q, k, v)
    out_trimmed, grads_trimmed = _grads(trimmed, q, k, v)
    torch.testing.assert_close(out_padded, out_trimmed, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_padded, grads_trimmed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # The padded keys and values get no gradient at all.
    assert grads_padded[1][1, :, real:].abs().max() == 0 and grads_padded[2][1, :, real:].abs().max() == 0


def test_context_once_then_reads_equal_the_whole_op():
    q, k, v, projection = _inputs(2)
    context = favor_cross_context(k, v, projection)
    pieces = [favor_cross_read(q[:, :, t : t + 1], context, projection) for t in range(LQ)]
    torch.testing.assert_close(torch.cat(pieces, dim=2), favor_cross_attention(q, k, v, projection))


def test_estimates_exact_softmax_attention_better_with_more_features():
    g = torch.Generator().manual_seed(3)
    q, k, v = (0.5 * torch.randn(1, 2, n, 8, generator=g, dtype=torch.float64) for n in (6, 9, 9))
    exact = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, dim=-1) @ v
    errors = []
    for m in (8, 512):
        runs = [
            favor_cross_attention(q, k, v, random_projection(m, 8, generator=g, dtype=torch.float64))
            for _ in range(8)
        ]
        errors.append(sum((r - exact).pow(2).mean() for r in runs) / len(runs))
    assert errors[1] < errors[0] / 4


def test_shape_errors_name_the_shapes():
    q, k, v, projection = _inputs()
    with pytest.raises(ValueError, match="q must be"):
        favor_cross_attention(q[:, :2], k, v, projection)
    with pytest.raises(ValueError, match="k and v"):
        favor_cross_attention(q, k, v[:, :, :3], projection)
