"""`SelfAttention.attention_matrix` is the plain twin of `forward`: the output projection of ``matrix @ v``
is the module's output, for every attention module (exact, FAVOR+, Linformer), with padding and rotary
positions."""

from __future__ import annotations

import pytest
import torch

from favor.layers.attention import ExactSelfAttention
from favor.layers.favor_attention import FavorSelfAttention
from favor.layers.linformer_attention import LinformerSelfAttention

D_MODEL, HEADS, L = 24, 3, 29

MODULES = {
    "exact": lambda: ExactSelfAttention(d_model=D_MODEL, n_heads=HEADS, rotary=True),
    "exact-causal": lambda: ExactSelfAttention(d_model=D_MODEL, n_heads=HEADS, causal=True),
    "favor": lambda: FavorSelfAttention(d_model=D_MODEL, n_heads=HEADS, nb_features=32, rotary=True),
    "favor-causal-relu": lambda: FavorSelfAttention(
        d_model=D_MODEL, n_heads=HEADS, nb_features=32, causal=True, kernel="relu"
    ),
    "linformer": lambda: LinformerSelfAttention(d_model=D_MODEL, n_heads=HEADS, max_length=40, proj_dim=8),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_matrix_times_values_is_the_modules_output(name):
    torch.manual_seed(0)
    module = MODULES[name]().double()
    x = torch.randn(2, L, D_MODEL, dtype=torch.float64)
    padding = torch.zeros(2, L, dtype=torch.bool)
    padding[0, 20:] = True
    expected = module(x, padding_mask=padding)
    matrix = module.attention_matrix(x, padding_mask=padding)
    assert matrix.shape == (2, HEADS, L, L)
    _, _, v = module._split_heads(x)
    got = module._merge_heads(matrix @ v)
    real = ~padding[..., None]
    torch.testing.assert_close(got * real, expected * real)
    assert matrix[0, :, :, 20:].abs().max() == 0  # padded keys carry no weight
