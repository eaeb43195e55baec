import math

import pytest
import torch

from favor.ops import random_projection


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("m,d", [(16, 16), (40, 16), (7, 16), (256, 64)])
def test_shape_and_block_orthogonality(m, d):
    w = random_projection(m, d, generator=_gen(), dtype=torch.float64)
    assert w.shape == (m, d)
    for start in range(0, m, d):
        block = w[start : start + d]
        directions = block / block.norm(dim=1, keepdim=True)
        gram = directions @ directions.T
        torch.testing.assert_close(gram, torch.eye(len(block), dtype=torch.float64), atol=1e-10, rtol=0)


def test_sqrt_d_norms_are_exact():
    w = random_projection(100, 32, norms="sqrt_d", generator=_gen(), dtype=torch.float64)
    torch.testing.assert_close(w.norm(dim=1), torch.full((100,), math.sqrt(32), dtype=torch.float64))
    w_iid = random_projection(
        100, 32, orthogonal=False, norms="sqrt_d", generator=_gen(), dtype=torch.float64
    )
    torch.testing.assert_close(w_iid.norm(dim=1), torch.full((100,), math.sqrt(32), dtype=torch.float64))


def test_chi_norms_match_gaussian_row_norms():
    d = 16
    norms = random_projection(4000, d, generator=_gen(), dtype=torch.float64).norm(dim=1)
    # E[chi(d)^2] = d and Var[chi(d)^2] = 2d; the mean of 4000 squares is within 5 standard errors of d.
    assert abs(norms.pow(2).mean().item() - d) < 5 * math.sqrt(2 * d / 4000)
    assert norms.std().item() > 0.3  # not all equal


def test_orthogonal_entries_are_standard_gaussian_marginally():
    w = random_projection(4096, 8, generator=_gen(), dtype=torch.float64)
    assert abs(w.mean().item()) < 0.02
    assert abs(w.var().item() - 1.0) < 0.03


def test_seeded_draws_reproduce_and_differ():
    a = random_projection(64, 16, generator=_gen(1))
    b = random_projection(64, 16, generator=_gen(1))
    c = random_projection(64, 16, generator=_gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="norms"):
        random_projection(8, 8, norms="unit")
    with pytest.raises(ValueError, match="positive"):
        random_projection(0, 8)
