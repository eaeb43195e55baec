"""The approximation-error measurement (Performer Fig. 4, Lemma 2) on tiny inputs: L=96, d=8."""

import math

import pytest
import torch

from favor.evaluate.approximation import (
    VARIANTS,
    approximation_error,
    exact_reference,
    favor_attention_matrix,
    gaussian_qkv,
    model_qkv,
    softmax_attention_matrix,
    sweep,
)
from favor.ops import favor_attention, random_projection

L, D = 96, 8
FEATURES = (8, 64, 512)


@pytest.fixture(scope="module")
def moderate():
    # std = d^-1/4: the scaled inputs have unit norm, where every variant converges.
    return gaussian_qkv(L, D, std=D**-0.25, seed=1)


@pytest.fixture(scope="module")
def moderate_sweep(moderate):
    return sweep(*moderate, feature_counts=FEATURES, draws=20, seed=0)


def _mean(results, variant, m, kind="output"):
    (r,) = (r for r in results if r.variant == variant and r.nb_features == m)
    return r.output_mean if kind == "output" else r.matrix_mean


def test_matrix_estimate_matches_the_explicit_positive_features(moderate):
    q, k, v = moderate
    w = random_projection(16, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x, y = q[0, 0] * D**-0.25, k[0, 0] * D**-0.25
    phi_x = torch.exp(x @ w.T - x.pow(2).sum(-1, keepdim=True) / 2)
    phi_y = torch.exp(y @ w.T - y.pow(2).sum(-1, keepdim=True) / 2)
    kernel = phi_x @ phi_y.T
    expected = kernel / kernel.sum(-1, keepdim=True)
    estimate = favor_attention_matrix(q, k, w, kernel="softmax")
    torch.testing.assert_close(estimate[0, 0], expected, rtol=1e-10, atol=1e-14)
    # The matrix is the one favor_attention applies to v.
    torch.testing.assert_close(estimate @ v, favor_attention(q, k, v, w), rtol=1e-9, atol=1e-12)


def test_exact_matrix_rows_sum_to_one(moderate):
    q, k, _ = moderate
    torch.testing.assert_close(softmax_attention_matrix(q, k).sum(-1), torch.ones(1, 1, L, dtype=q.dtype))


@pytest.mark.parametrize("variant", ["positive-orthogonal", "positive-iid", "hyperbolic-orthogonal"])
@pytest.mark.parametrize("kind", ["output", "matrix"])
def test_error_decreases_with_features(moderate_sweep, variant, kind):
    errors = [_mean(moderate_sweep, variant, m, kind) for m in FEATURES]
    assert errors[0] > errors[1] > errors[2], errors


@pytest.mark.parametrize("family", ["positive", "hyperbolic", "trig"])
def test_orthogonal_beats_iid_on_average(moderate_sweep, family):
    # Geometric mean over m: one heavy-tailed cell (trig at m=8) must not decide the comparison.
    orthogonal = sum(math.log(_mean(moderate_sweep, f"{family}-orthogonal", m)) for m in FEATURES)
    iid = sum(math.log(_mean(moderate_sweep, f"{family}-iid", m)) for m in FEATURES)
    assert orthogonal < iid


def test_trigonometric_features_are_worst_at_unit_gaussian_inputs():
    # Entries N(0, 1): |x|^2 = sqrt(d) ~ 2.8; trig error grows with exp(|x|^2 + |y|^2) (Lemma 2).
    q, k, v = gaussian_qkv(L, D, std=1.0, seed=2)
    results = sweep(q, k, v, feature_counts=(16, 128), draws=4, matrix=False)
    for m in (16, 128):
        trig = min(_mean(results, name, m) for name in ("trig-orthogonal", "trig-iid"))
        others = max(_mean(results, name, m) for name in VARIANTS if not name.startswith("trig"))
        assert trig > 3 * others, (m, trig, others)


def test_error_grows_with_input_norm():
    errors = []
    for std in (0.3, 0.6, 1.0):
        q, k, v = gaussian_qkv(L, D, std=std, seed=4)
        errors.append(approximation_error(q, k, v, nb_features=64, draws=4, matrix=False).output_mean)
    assert errors[0] < errors[1] < errors[2], errors


def test_accepts_given_multi_head_tensors_and_reuses_a_reference():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 3, 17, 4, generator=g) * 0.5 for _ in range(3))
    reference = exact_reference(q, k, v, matrix=False)
    stats = approximation_error(q, k, v, nb_features=16, draws=3, matrix=False, reference=reference)
    assert len(stats.output) == 3 and stats.matrix == ()
    assert stats.output_std > 0 and all(e > 0 for e in stats.output)
    again = approximation_error(q, k, v, nb_features=16, draws=3, matrix=False)
    assert again.output == stats.output


def test_hyperbolic_and_trig_draw_half_the_rows_for_the_same_feature_count(moderate):
    q, k, v = moderate
    # m = 1 leaves half a row for the two-sided maps: refused with the variant's name.
    with pytest.raises(ValueError, match="hyperbolic-iid"):
        approximation_error(q, k, v, nb_features=1, variant="hyperbolic-iid", draws=1)
    with pytest.raises(ValueError, match="draws"):
        approximation_error(q, k, v, nb_features=8, draws=0)


def test_model_qkv_are_the_layers_own_queries_keys_values():
    from favor.models import ModelConfig, SequenceModel

    config = ModelConfig(
        vocab_size=33, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_length=64, backbone="transformer"
    )
    model = SequenceModel(config).eval()
    ids = torch.randint(5, 25, (1, 40), generator=torch.Generator().manual_seed(0))
    q, k, v = model_qkv(model, ids, layer=-1)
    assert q.shape == k.shape == v.shape == (1, 4, 40, 8) and q.dtype == torch.float64
    # Exact attention of the captured q, k, v, merged and projected, is the layer's output.
    attention = model.backbone.blocks[-1].attention
    outputs = []
    hook = attention.register_forward_hook(lambda module, args, out: outputs.append(out))
    with torch.no_grad():
        model(ids)
    hook.remove()
    from favor.ops import softmax_attention

    merged = attention._merge_heads(softmax_attention(q, k, v).float())
    torch.testing.assert_close(merged, outputs[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        model_qkv(model, ids, layer=2)
