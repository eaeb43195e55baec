"""BLOSUM analysis: the embedded table, rank correlation, explicit attention matrices, the command."""

import json

import numpy as np
import pytest
import torch

from favor.data import write_fasta
from favor.layers import ExactSelfAttention, FavorSelfAttention
from favor.tasks.blosum import (
    BLOSUM62_ORDER,
    _attention_matrix,
    blosum62,
    blosum_cli,
    correlation_with_blosum,
    spearman,
)


def test_blosum62_table():
    table = blosum62()
    assert table.shape == (20, 20) and np.array_equal(table, table.T)
    index = BLOSUM62_ORDER.index
    assert table[index("W"), index("W")] == 11 and table[index("C"), index("C")] == 9
    assert table[index("I"), index("V")] == 3 and table[index("D"), index("L")] == -4
    assert table[index("A"), index("A")] == 4 and table[index("Y"), index("F")] == 3


def test_blosum62_matches_biopython():
    matrices = pytest.importorskip("Bio.Align.substitution_matrices")
    reference = matrices.load("BLOSUM62")
    expected = np.array([[reference[a][b] for b in BLOSUM62_ORDER] for a in BLOSUM62_ORDER])
    assert np.array_equal(blosum62(), expected)


def test_spearman_with_ties_by_hand():
    # Ranks of [1, 2, 2, 3] are [0, 1.5, 1.5, 3]: identical ordering -> 1.
    assert spearman(np.array([1, 2, 2, 3]), np.array([10, 20, 20, 30])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    itself = correlation_with_blosum(blosum62().astype(float))
    assert itself["spearman"] == pytest.approx(1.0) and itself["mantel_p"] == pytest.approx(1 / 1000)
    noise = np.random.default_rng(0).normal(size=(20, 20))
    assert correlation_with_blosum(noise + noise.T)["mantel_p"] > 0.01


@pytest.mark.parametrize("causal", [False, True])
def test_favor_matrix_is_what_the_layer_applies(causal):
    torch.manual_seed(0)
    module = FavorSelfAttention(d_model=16, n_heads=2, causal=causal, nb_features=8).double()
    x = torch.randn(1, 13, 16, dtype=torch.float64)
    q, k, v = module._split_heads(x)
    weights = _attention_matrix(module, x, "favor")  # (H, T, T)
    expected = module.attend(q, k, v, padding_mask=None)[0]
    torch.testing.assert_close(weights @ v[0], expected, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 13, dtype=torch.float64))


def test_softmax_matrix_is_exact_attention():
    torch.manual_seed(0)
    module = ExactSelfAttention(d_model=16, n_heads=2).double()
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    q, k, v = module._split_heads(x)
    weights = _attention_matrix(module, x, "favor")  # exact modules always use softmax
    torch.testing.assert_close(weights @ v[0], module.attend(q, k, v, padding_mask=None)[0])


def test_blosum_command_writes_results(tiny_run, tmp_path, capsys):
    fasta = tmp_path / "p.fasta"
    rng = np.random.default_rng(0)
    write_fasta([(f"p{i}", "".join(rng.choice(list(BLOSUM62_ORDER), 60))) for i in range(6)], fasta)
    assert blosum_cli(tiny_run, data=fasta, out=tmp_path / "out", max_sequences=4) == 0
    result = json.loads((tmp_path / "out" / "blosum.json").read_text())
    assert result["n_sequences"] == 4 and result["n_residues"] == 4 * 46
    assert len(result["pretrained"]["matrix"]) == 20 and len(result["pretrained"]["per_head"]) == 4
    for name in ("pretrained", "random_init"):
        assert -1 <= result[name]["attention"]["spearman"] <= 1
    assert (tmp_path / "out" / "blosum.png").stat().st_size > 0
    assert "pretrained" in capsys.readouterr().out
