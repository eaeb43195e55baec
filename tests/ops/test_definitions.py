"""Each kernel's attention against its definition written out here, independently of favor.ops.features:
the feature map (scaling by d^-1/4, |x|^2 term, ReLU epsilon), the attention matrix, the causal mask and the
normalisation, outputs and gradients."""

import pytest
import torch

from favor.ops import favor_attention, random_projection

D, M = 8, 16


def _phi(x, w, kernel):
    x = x * D**-0.25
    if kernel == "relu":
        return torch.relu(x @ w.T) + 1e-3
    half_sq = (x * x).sum(-1, keepdim=True) / 2
    if kernel == "softmax":
        return torch.exp(x @ w.T - half_sq) / M**0.5
    if kernel == "softmax_hyperbolic":
        return torch.cat([torch.exp(x @ w.T - half_sq), torch.exp(-x @ w.T - half_sq)], -1) / (2 * M) ** 0.5
    raise ValueError(kernel)


def _written_out(q, k, v, w, kernel, causal):
    a = _phi(q, w, kernel) @ _phi(k, w, kernel).transpose(-2, -1)  # (B, H, L, L)
    if causal:
        a = a * torch.ones(a.shape[-2:], dtype=a.dtype).tril()
    return (a @ v) / a.sum(-1, keepdim=True)


@pytest.mark.parametrize("kernel", ["softmax", "softmax_hyperbolic", "relu"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_its_definition(kernel, causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 21, D, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
    w = random_projection(M, D, generator=g, dtype=torch.float64)
    weights = torch.randn(2, 2, 21, D, generator=g, dtype=torch.float64)
    fast = favor_attention(q, k, v, w, kernel=kernel, causal=causal, chunk_size=4, tile_size=8)
    want = _written_out(q, k, v, w, kernel, causal)
    torch.testing.assert_close(fast, want, rtol=1e-10, atol=1e-12)
    got_grads = torch.autograd.grad((fast * weights).sum(), (q, k, v))
    want_grads = torch.autograd.grad((want * weights).sum(), (q, k, v))
    for got, expected, name in zip(got_grads, want_grads, "qkv", strict=True):
        torch.testing.assert_close(
            got, expected, rtol=1e-9, atol=1e-11, msg=lambda m, n=name: f"grad {n}: {m}"
        )


def test_relu_without_projection_is_relu_plus_epsilon():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 9, D, generator=g, dtype=torch.float64) for _ in range(3))
    a = (torch.relu(q) + 1e-3) @ (torch.relu(k) + 1e-3).transpose(-2, -1)
    torch.testing.assert_close(
        favor_attention(q, k, v, None, kernel="relu"), (a @ v) / a.sum(-1, keepdim=True)
    )
