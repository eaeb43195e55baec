"""Statistical properties of the FAVOR+ estimator against exact softmax attention (paper Lemma 1, Thm 2)."""

import pytest
import torch

from favor.ops import favor_attention, feature_map, random_projection, softmax_attention

B, H, L, D = 1, 2, 24, 8


def _qkv(scale=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Moderate norms, as after layer norm: the estimator's variance grows like exp(|q + k|^2).
    return [torch.randn(B, H, L, D, generator=g, dtype=torch.float64) * scale for _ in range(3)]


def _mse(m, seed, *, orthogonal=True, kernel="softmax", causal=False, qkv=None):
    q, k, v = qkv or _qkv()
    w = random_projection(
        m, D, orthogonal=orthogonal, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    approx = favor_attention(q, k, v, w, kernel=kernel, causal=causal)
    return (approx - softmax_attention(q, k, v, causal=causal)).pow(2).mean().item()


@pytest.mark.parametrize(
    "kernel,normalizer", [("softmax", 1), ("softmax_hyperbolic", 2), ("softmax_trig", 1)]
)
@pytest.mark.parametrize("orthogonal", [True, False])
def test_kernel_estimate_is_unbiased(kernel, normalizer, orthogonal):
    # phi(q) . phi(k) / (number of draws per feature) estimates exp(q.k / sqrt(d)) without bias.
    q, k, _ = _qkv()
    exact = torch.exp(q @ k.transpose(-2, -1) / D**0.5)
    m = 16
    estimates = []
    for seed in range(1500):
        w = random_projection(
            m, D, orthogonal=orthogonal, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        phi_q, phi_k = (
            f.base * f.log_scale.exp().unsqueeze(-1)
            for f in (feature_map(x, w, kernel=kernel) for x in (q, k))
        )
        estimates.append(phi_q @ phi_k.transpose(-2, -1) / (m * normalizer))
    estimates = torch.stack(estimates)
    relative = lambda est: ((est - exact).abs() / exact).mean().item()  # noqa: E731
    assert relative(estimates.mean(0)) < 0.03
    assert relative(estimates.mean(0)) < relative(estimates[0]) / 8


@pytest.mark.parametrize("causal", [False, True])
def test_average_over_draws_converges_to_exact_attention(causal):
    q, k, v = _qkv()
    exact = softmax_attention(q, k, v, causal=causal)
    draws = torch.stack(
        [
            favor_attention(
                q,
                k,
                v,
                random_projection(64, D, generator=torch.Generator().manual_seed(s), dtype=torch.float64),
                causal=causal,
            )
            for s in range(300)
        ]
    )
    single = (draws[0] - exact).abs().mean()
    averaged = (draws.mean(0) - exact).abs().mean()
    # A ratio of unbiased estimates: its bias is O(1/m), far below the error of one draw.
    assert averaged < single / 4
    assert averaged < 0.01


@pytest.mark.parametrize("kernel", ["softmax", "softmax_hyperbolic"])
def test_error_shrinks_as_features_grow(kernel):
    errors = [sum(_mse(m, s, kernel=kernel) for s in range(20)) / 20 for m in (8, 64, 512)]
    assert errors[0] > 2 * errors[1] > 4 * errors[2]


def test_orthogonal_features_beat_iid():
    seeds = range(60)
    orthogonal = sum(_mse(D, s, orthogonal=True) for s in seeds)
    iid = sum(_mse(D, s, orthogonal=False) for s in seeds)
    assert orthogonal < 0.8 * iid


def test_positive_features_beat_trigonometric_on_small_kernel_values():
    # Lemma 2: trigonometric features blow up where exp(q.k) is small; positive features do not.
    qkv = _qkv(scale=1.2, seed=3)
    positive = sum(_mse(64, s, qkv=qkv) for s in range(10))
    trig = sum(_mse(64, s, kernel="softmax_trig", qkv=qkv) for s in range(10))
    assert positive < trig


def test_relu_kernel_runs_with_and_without_projection():
    q, k, v = _qkv()
    w = random_projection(32, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for proj in (w, None):
        for causal in (False, True):
            out = favor_attention(q, k, v, proj, kernel="relu", causal=causal)
            assert out.shape == v.shape and torch.isfinite(out).all()


def test_unknown_kernel_and_missing_projection_are_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="unknown kernel"):
        favor_attention(q, k, v, None, kernel="cosine")
    with pytest.raises(ValueError, match="needs a projection"):
        favor_attention(q, k, v, None, kernel="softmax")
