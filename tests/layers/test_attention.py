"""Attention modules: exact attention against the reference, FAVOR+ buffers, Linformer padding."""

import pytest
import torch

from favor.layers import ExactSelfAttention, FavorSelfAttention, LinformerSelfAttention
from favor.ops import softmax_attention

D, H = 16, 2


def heads(module, x):
    q, k, v = module._split_heads(x)
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
def test_exact_attention_matches_the_reference_with_padding(causal):
    torch.manual_seed(0)
    module = ExactSelfAttention(d_model=D, n_heads=H, causal=causal).double()
    x = torch.randn(2, 7, D, dtype=torch.float64)
    padding_mask = torch.zeros(2, 7, dtype=torch.bool)
    padding_mask[1, 4:] = True
    q, k, v = heads(module, x)
    got = module.attend(q, k, v, padding_mask=padding_mask)
    expected = softmax_attention(q, k, v, causal=causal, key_padding_mask=padding_mask)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1, :, :4], expected[1, :, :4])
    assert torch.isfinite(got).all()


def test_exact_attention_with_fully_padded_rows_stays_finite():
    module = ExactSelfAttention(d_model=D, n_heads=H, causal=True)
    padding_mask = torch.tensor([[True, True, False, False]])
    out = module(torch.randn(1, 4, D), padding_mask=padding_mask)
    assert torch.isfinite(out).all()


def test_favor_attention_approximates_exact_attention():
    torch.manual_seed(0)
    favor = FavorSelfAttention(d_model=D, n_heads=H, nb_features=512, seed=0).double()
    exact = ExactSelfAttention(d_model=D, n_heads=H).double()
    exact.load_state_dict(favor.state_dict(), strict=False)
    x = 0.3 * torch.randn(1, 9, D, dtype=torch.float64)
    error = (favor(x) - exact(x)).abs().max()
    # The estimate errs by ~9e-4 here (m=512). Attention that ignored q and k (uniform weights) would err by
    # ~6e-3, so the bar sits between the two, and the uniform stand-in is checked to fail it.
    assert error < 2.5e-3
    q, k, v = favor._split_heads(x)
    uniform = favor._merge_heads(v.mean(dim=2, keepdim=True).expand_as(v))
    assert (uniform - exact(x)).abs().max() > 2.5e-3


def test_favor_projection_is_a_persistent_buffer_and_redraw_is_explicit():
    module = FavorSelfAttention(d_model=D, n_heads=H, nb_features=10, seed=3)
    assert module.projection.shape == (10, D // H)
    assert "projection" in module.state_dict()
    assert not any(p is module.projection for p in module.parameters())
    before = module.projection.clone()
    module(torch.randn(1, 5, D))
    assert torch.equal(module.projection, before)
    module.redraw_projections(torch.Generator().manual_seed(0))
    assert not torch.equal(module.projection, before)
    other = FavorSelfAttention(d_model=D, n_heads=H, nb_features=10, seed=3)
    assert torch.equal(other.projection, before)


@pytest.mark.parametrize("share_kv", [False, True])
def test_linformer_zeroes_padded_keys_so_appended_padding_is_invisible(share_kv):
    torch.manual_seed(0)
    module = LinformerSelfAttention(
        d_model=D, n_heads=H, max_length=12, proj_dim=4, share_kv=share_kv
    ).double()
    x = torch.randn(1, 6, D, dtype=torch.float64)
    padded = torch.cat([x, torch.randn(1, 3, D, dtype=torch.float64)], dim=1)
    padding_mask = torch.arange(9)[None, :] >= 6
    torch.testing.assert_close(module(padded, padding_mask=padding_mask)[:, :6], module(x))
    with pytest.raises(ValueError, match="max_length=12"):
        module(torch.randn(1, 13, D, dtype=torch.float64))


def test_bidirectional_attention_refuses_to_step():
    module = FavorSelfAttention(d_model=D, n_heads=H, nb_features=8)
    with pytest.raises(ValueError, match="causal=True"):
        module.step(torch.randn(1, 1, D), None, offset=0)


def test_head_count_must_divide_d_model():
    with pytest.raises(ValueError, match="d_model=10 must be divisible by n_heads=4"):
        ExactSelfAttention(d_model=10, n_heads=4)


def test_kv_cache_appends_in_place_and_branches_safely():
    torch.manual_seed(0)
    attention = ExactSelfAttention(d_model=D, n_heads=H, causal=True).double()
    x = torch.randn(2, 40, D, dtype=torch.float64)
    full = attention(x)
    state, outs, buffers = None, [], set()
    for t in range(40):
        out, state = attention.step(x[:, t : t + 1], state, offset=t)
        outs.append(out)
        buffers.add(id(state._buffer))
    torch.testing.assert_close(torch.cat(outs, dim=1), full)
    assert len(buffers) <= 2  # grown by doubling (64 slots cover 40 tokens): not a copy per token
    # Two branches from one state: each sees its own continuation, and the first survives the second.
    _, prefix = attention.step(x[:, :20], None, offset=0)
    a, after_a = attention.step(x[:, 20:21], prefix, offset=20)
    other = torch.randn(2, 1, D, dtype=torch.float64)
    _, after_b = attention.step(other, prefix, offset=20)
    again, _ = attention.step(x[:, 21:22], after_a, offset=21)
    torch.testing.assert_close(a, full[:, 20:21])
    torch.testing.assert_close(again, full[:, 21:22])
    assert after_b.length == after_a.length == 21
    assert not torch.equal(after_b.keys[:, :, 20], after_a.keys[:, :, 20])
